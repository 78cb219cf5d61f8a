//! Fail-stop, then recovery by itself: [`RecoveringStore`] is the embedded store as the server
//! runs it.
//!
//! When the engine fails (a write or sync error: a failed fsync, a full disk the floor did not
//! catch, a device error), the engine poisons itself and would answer every write with an error
//! for good. This wrapper stops using it at once: every operation is refused
//! ([`StoreError::Recovering`]; clients get `unavailable`, an unknown outcome, and resend with the
//! same command id), so `/readyz`, which reads the store, turns 503 with the cause. A thread then
//! closes the failed store (its writer finishes, its files and lock are released) and reopens the
//! data directory as after a crash (the journal replayed), retrying with back-off (100 ms, doubling
//! to 5 s) until it opens; then the store takes writes again. Nothing acknowledged is lost: an
//! acknowledged append was synced before its answer, and a batch whose sync failed was answered
//! with an error (whether it reached the disk is then whatever the reopen finds, and a resend
//! with the same command id tells). A failed sync is never retried on the same open files.
//!
//! While reopening fails, reads fail too (the data directory is held by one process at a time,
//! and the failed store must be closed before it can be reopened); the log says why, once per
//! attempt, at most every 5 s.

use super::*;
use std::sync::RwLock;

/// Longest wait between two attempts to reopen.
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// How long the recovery waits for operations in flight to let go of the failed store.
const LET_GO: Duration = Duration::from_secs(10);

/// What the server does when the store fails.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum OnFailure {
    /// Refuse requests and reopen the store in the background until it opens (the default).
    #[default]
    Reopen,
    /// Exit the process with [`EXIT_STORE_FAILED`], for a supervisor that restarts it (every
    /// acknowledged command is already durable).
    Exit,
}

/// The exit status of a process that stops because its store failed (`EX_TEMPFAIL`).
pub const EXIT_STORE_FAILED: i32 = 75;

/// The embedded store, reopened by itself after an engine failure. See the module docs.
pub struct RecoveringStore {
    shared: Arc<Shared>,
}

struct Shared {
    dir: PathBuf,
    options: EmbeddedOptions,
    on_failure: OnFailure,
    state: RwLock<State>,
}

enum State {
    Open(Arc<EmbeddedStore>),
    /// Failed (the cause), reopening since `since`.
    Failed {
        cause: String,
        since: Instant,
    },
}

impl std::fmt::Debug for RecoveringStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecoveringStore")
            .field("dir", &self.shared.dir)
            .finish_non_exhaustive()
    }
}

impl RecoveringStore {
    /// Opens the store in `dir` (failing as [`EmbeddedStore::open_with`] does); on a failure
    /// later, does what `on_failure` says.
    pub fn open(
        dir: &Path,
        options: EmbeddedOptions,
        on_failure: OnFailure,
    ) -> Result<Self, OpenError> {
        let store = EmbeddedStore::open_with(dir, options.clone())?;
        Ok(Self {
            shared: Arc::new(Shared {
                dir: dir.to_owned(),
                options,
                on_failure,
                state: RwLock::new(State::Open(Arc::new(store))),
            }),
        })
    }

    /// The cause, while the store is failed and reopening.
    pub fn failure(&self) -> Option<String> {
        match &*self.shared.read() {
            State::Open(_) => None,
            State::Failed { cause, .. } => Some(cause.clone()),
        }
    }

    /// The store to use now, or why there is none.
    fn current(&self) -> Result<Arc<EmbeddedStore>, StoreError> {
        match &*self.shared.read() {
            State::Open(store) => Ok(store.clone()),
            State::Failed { cause, .. } => Err(StoreError::Recovering(cause.clone())),
        }
    }

    /// `result` of an operation on `store`; an engine failure stops `store` and starts the
    /// recovery.
    fn checked<T>(
        &self,
        store: &Arc<EmbeddedStore>,
        result: Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        if let Err(e @ StoreError::Engine { .. }) = &result {
            Shared::fail(&self.shared, store, e);
        }
        result
    }
}

impl Shared {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Stops using `failed` (if it is still the current store) and reopens in a thread.
    fn fail(shared: &Arc<Shared>, failed: &Arc<EmbeddedStore>, cause: &StoreError) {
        let old = {
            let mut state = shared.write();
            match &*state {
                State::Open(current) if Arc::ptr_eq(current, failed) => {}
                // Already failed (another operation saw it first), or already reopened.
                _ => return,
            }
            let cause = cause.to_string();
            if shared.on_failure == OnFailure::Exit {
                tracing::error!(
                    error = %cause,
                    dir = %shared.dir.display(),
                    status = EXIT_STORE_FAILED,
                    "the store failed: exiting for the supervisor to restart the server \
                     (--on-store-failure exit)"
                );
                std::process::exit(EXIT_STORE_FAILED);
            }
            tracing::error!(
                error = %cause,
                dir = %shared.dir.display(),
                "the store failed: writes and reads are refused; reopening it from what is on disk"
            );
            match std::mem::replace(
                &mut *state,
                State::Failed {
                    cause,
                    since: Instant::now(),
                },
            ) {
                State::Open(old) => old,
                State::Failed { .. } => unreachable!("checked above"),
            }
        };
        let shared = shared.clone();
        let spawned = std::thread::Builder::new()
            .name("warden-store-recovery".into())
            .spawn(move || shared.recover(old));
        if let Err(e) = spawned {
            tracing::error!(error = %e, "cannot start the store's recovery; restart the server");
        }
    }

    /// Closes `old` once nothing uses it, then reopens until it opens.
    fn recover(&self, old: Arc<EmbeddedStore>) {
        let deadline = Instant::now() + LET_GO;
        while Arc::strong_count(&old) > 1 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        // The last handle closes it: the writer finishes (its appends fail on the poisoned
        // engine) and the data directory's lock is released.
        drop(old);
        let mut backoff = Duration::from_millis(100);
        let mut attempts = 1u32;
        loop {
            match EmbeddedStore::open_with(&self.dir, self.options.clone()) {
                Ok(store) => {
                    let mut state = self.write();
                    let took = match &*state {
                        State::Failed { since, .. } => since.elapsed(),
                        State::Open(_) => Duration::ZERO,
                    };
                    *state = State::Open(Arc::new(store));
                    tracing::warn!(
                        attempts,
                        took_ms = took.as_millis() as u64,
                        "the store is reopened and takes writes again"
                    );
                    return;
                }
                Err(e) => {
                    tracing::warn!(
                        error = %e,
                        attempts,
                        retry_in_ms = backoff.as_millis() as u64,
                        "reopening the store failed"
                    );
                    if let State::Failed { cause, .. } = &mut *self.write() {
                        *cause = format!("reopening failed ({attempts} attempts): {e}");
                    }
                }
            }
            std::thread::sleep(backoff);
            backoff = (backoff * 2).min(MAX_BACKOFF);
            attempts += 1;
        }
    }
}

#[async_trait]
impl EventStore for RecoveringStore {
    async fn append(&self, req: AppendRequest) -> Result<CommitRecord, AppendError> {
        let store = self.current()?;
        let result = store.append(req).await;
        if let Err(AppendError::Store(e @ StoreError::Engine { .. })) = &result {
            Shared::fail(&self.shared, &store, e);
        }
        result
    }

    async fn append_many(
        &self,
        appends: Vec<AppendRequest>,
    ) -> Vec<Result<CommitRecord, AppendError>> {
        let store = match self.current() {
            Ok(store) => store,
            Err(e) => return appends.iter().map(|_| Err(e.clone().into())).collect(),
        };
        let results = store.append_many(appends).await;
        for result in &results {
            if let Err(AppendError::Store(e @ StoreError::Engine { .. })) = result {
                Shared::fail(&self.shared, &store, e);
                break;
            }
        }
        results
    }

    async fn load(&self, id: ResourceId) -> Result<Loaded, StoreError> {
        let store = self.current()?;
        let result = store.load(id).await;
        self.checked(&store, result)
    }

    async fn events(
        &self,
        id: ResourceId,
        after_version: u64,
        limit: usize,
    ) -> Result<Vec<EventEnvelope>, StoreError> {
        let store = self.current()?;
        let result = store.events(id, after_version, limit).await;
        self.checked(&store, result)
    }

    async fn find_command(
        &self,
        command_id: CommandId,
    ) -> Result<Option<CommitRecord>, StoreError> {
        let store = self.current()?;
        let result = store.find_command(command_id).await;
        self.checked(&store, result)
    }

    async fn find_commands(
        &self,
        command_ids: &[CommandId],
    ) -> Result<Vec<Option<CommitRecord>>, StoreError> {
        let store = self.current()?;
        let result = store.find_commands(command_ids).await;
        self.checked(&store, result)
    }

    async fn head(&self, id: ResourceId) -> Result<u64, StoreError> {
        let store = self.current()?;
        let result = store.head(id).await;
        self.checked(&store, result)
    }

    async fn resource_ids(&self) -> Result<Vec<ResourceId>, StoreError> {
        let store = self.current()?;
        let result = store.resource_ids().await;
        self.checked(&store, result)
    }
}

#[async_trait]
impl ReadModelStore for RecoveringStore {
    async fn upsert(&self, views: Vec<ClientResource>) -> Result<(), StoreError> {
        let store = self.current()?;
        let result = store.upsert(views).await;
        self.checked(&store, result)
    }

    async fn get(&self, id: ResourceId) -> Result<Option<ClientResource>, StoreError> {
        let store = self.current()?;
        let result = ReadModelStore::get(store.as_ref(), id).await;
        self.checked(&store, result)
    }

    async fn list_by_owner(&self, owner: &PlayerId) -> Result<Vec<ClientResource>, StoreError> {
        let store = self.current()?;
        let result = store.list_by_owner(owner).await;
        self.checked(&store, result)
    }

    async fn clear(&self) -> Result<(), StoreError> {
        let store = self.current()?;
        let result = store.clear().await;
        self.checked(&store, result)
    }
}
