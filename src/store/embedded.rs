//! The embedded backend: two redb files under a data directory, no set-up.
//!
//! - `events.redb`, the write side: `events` ((resource, version) → event), `heads` (resource →
//!   latest version), `commands` (command id → commit record), `snapshots` (resource → state).
//! - `read_model.redb`, the read side: `views` (resource → client view) and `by_owner`
//!   ((owner, resource) → ()). A separate file, so the client schema is stored apart from the
//!   server schema and its writes never queue behind the event log's.
//!
//! **Group commit.** One writer thread owns every write to `events.redb`. It takes all the appends
//! waiting in its queue (up to [`MAX_BATCH`]), checks and inserts each in one write transaction,
//! commits once (one fsync), then answers each caller. Appends from many actors thus share an
//! fsync, and a caller hears `Ok` only after the commit is durable. Each append is checked inside
//! the transaction against what earlier appends of the same batch wrote, so two appends at the same
//! expected version in one batch still produce exactly one winner.
//! An [`EventStore::append_many`] from one actor is one job in that queue: its appends are
//! checked in order and commit in the same transaction; once one fails, the rest of that job is
//! refused as a conflict.

use crate::domain::{
    ClientResource, CommandId, EventEnvelope, PlayerId, ResourceId, ServerResource,
};
use crate::store::{
    AppendError, AppendRequest, CommitRecord, EventStore, Loaded, ReadModelStore, StoreError,
};
use async_trait::async_trait;
use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::sync::{mpsc, oneshot};

const EVENTS: TableDefinition<(u128, u64), &[u8]> = TableDefinition::new("events");
const HEADS: TableDefinition<u128, u64> = TableDefinition::new("heads");
const COMMANDS: TableDefinition<u128, (u128, u64, u64)> = TableDefinition::new("commands");
const SNAPSHOTS: TableDefinition<u128, &[u8]> = TableDefinition::new("snapshots");
const VIEWS: TableDefinition<u128, &[u8]> = TableDefinition::new("views");
const BY_OWNER: TableDefinition<(&str, u128), ()> = TableDefinition::new("by_owner");

/// Most appends one group commit takes (a job is never split, so one may go over). Larger batches amortise the fsync further but make the
/// first caller in a batch wait for the others' inserts.
pub const MAX_BATCH: usize = 1024;
/// Jobs (one caller's appends) that may wait for the writer; further callers wait for room
/// (back-pressure).
pub const WRITER_QUEUE: usize = 16 * 1024;

/// One caller's appends (checked in order) and where their outcomes go.
struct Job {
    appends: Vec<AppendRequest>,
    reply: oneshot::Sender<Vec<Result<CommitRecord, AppendError>>>,
}

/// Tunables of the embedded store, with documented defaults.
#[derive(Clone, Debug)]
pub struct EmbeddedOptions {
    /// Most appends one group commit takes (default [`MAX_BATCH`]). `1` turns group commit off:
    /// one fsync per append (benchmarks use it to show what group commit buys).
    pub max_batch: usize,
}

impl Default for EmbeddedOptions {
    fn default() -> Self {
        Self {
            max_batch: MAX_BATCH,
        }
    }
}

/// What the group-commit writer has done since the store was opened.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CommitStats {
    /// Write transactions committed (each one fsync).
    pub commits: u64,
    /// Appends those transactions carried (successful or refused); `appends / commits` is the
    /// mean group size.
    pub appends: u64,
}

/// Counters the writer thread bumps once per commit (two relaxed adds: cheap enough to keep on).
#[derive(Debug, Default)]
struct Counters {
    commits: AtomicU64,
    appends: AtomicU64,
}

/// The event store and read-model store on redb files.
pub struct EmbeddedStore {
    /// The write side's database; reads open their own MVCC read transactions on it.
    events: Arc<Database>,
    /// The read side's database.
    views: Arc<Database>,
    /// Queue to the group-commit writer thread.
    writer: mpsc::Sender<Job>,
    /// The writer thread, joined on drop so the files are closed when the store is gone.
    writer_thread: Option<std::thread::JoinHandle<()>>,
    /// Commits and appends done by the writer, for benchmarks and metrics.
    counters: Arc<Counters>,
    dir: PathBuf,
}

fn unavailable(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

fn corrupt(e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(e.to_string())
}

fn encode<T: serde::Serialize>(value: &T) -> Result<Vec<u8>, StoreError> {
    rmp_serde::to_vec_named(value).map_err(corrupt)
}

fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, StoreError> {
    rmp_serde::from_slice(bytes).map_err(corrupt)
}

impl EmbeddedStore {
    /// Opens (creating if needed) the store under `dir`, with the default options.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        Self::open_with(dir, EmbeddedOptions::default())
    }

    /// Opens (creating if needed) the store under `dir`.
    pub fn open_with(dir: &Path, options: EmbeddedOptions) -> Result<Self, StoreError> {
        std::fs::create_dir_all(dir)
            .map_err(|e| unavailable(format!("cannot create {}: {e}", dir.display())))?;
        let events = Arc::new(open_db(&dir.join("events.redb"))?);
        let views = Arc::new(open_db(&dir.join("read_model.redb"))?);
        {
            let tx = events.begin_write().map_err(unavailable)?;
            tx.open_table(EVENTS).map_err(unavailable)?;
            tx.open_table(HEADS).map_err(unavailable)?;
            tx.open_table(COMMANDS).map_err(unavailable)?;
            tx.open_table(SNAPSHOTS).map_err(unavailable)?;
            tx.commit().map_err(unavailable)?;
            let tx = views.begin_write().map_err(unavailable)?;
            tx.open_table(VIEWS).map_err(unavailable)?;
            tx.open_table(BY_OWNER).map_err(unavailable)?;
            tx.commit().map_err(unavailable)?;
        }
        let (writer, rx) = mpsc::channel(WRITER_QUEUE);
        let db = events.clone();
        let counters = Arc::new(Counters::default());
        let writer_counters = counters.clone();
        let max_batch = options.max_batch.max(1);
        let writer_thread = std::thread::Builder::new()
            .name("warden-group-commit".into())
            .spawn(move || group_commit_loop(&db, rx, max_batch, &writer_counters))
            .map_err(unavailable)?;
        Ok(Self {
            events,
            views,
            writer,
            writer_thread: Some(writer_thread),
            counters,
            dir: dir.to_owned(),
        })
    }

    /// Group commits done so far and the appends they carried.
    pub fn commit_stats(&self) -> CommitStats {
        CommitStats {
            commits: self.counters.commits.load(Ordering::Relaxed),
            appends: self.counters.appends.load(Ordering::Relaxed),
        }
    }

    /// The directory the files live in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn read<T>(
        &self,
        f: impl FnOnce(&redb::ReadTransaction) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let tx = self.events.begin_read().map_err(unavailable)?;
        f(&tx)
    }
}

fn open_db(path: &Path) -> Result<Database, StoreError> {
    Database::create(path).map_err(|e| unavailable(format!("cannot open {}: {e}", path.display())))
}

impl Drop for EmbeddedStore {
    fn drop(&mut self) {
        // Closing the queue lets the writer finish what it holds and exit; joining it means every
        // accepted append is committed and the file is closed before `drop` returns.
        let (closed, _) = mpsc::channel(1);
        drop(std::mem::replace(&mut self.writer, closed));
        if let Some(t) = self.writer_thread.take() {
            let _ = t.join();
        }
    }
}

/// The writer thread: take a batch, check and insert each append, commit once, answer all.
fn group_commit_loop(
    db: &Database,
    mut rx: mpsc::Receiver<Job>,
    max_batch: usize,
    counters: &Counters,
) {
    let mut batch: Vec<Job> = Vec::new();
    while let Some(first) = rx.blocking_recv() {
        let mut appends = first.appends.len();
        batch.push(first);
        while appends < max_batch {
            match rx.try_recv() {
                Ok(job) => {
                    appends += job.appends.len();
                    batch.push(job);
                }
                Err(_) => break,
            }
        }
        match crate::metrics::timed_group_commit(appends, || commit_batch(db, &batch)) {
            Ok(outcomes) => {
                counters.commits.fetch_add(1, Ordering::Relaxed);
                counters
                    .appends
                    .fetch_add(appends as u64, Ordering::Relaxed);
                let mut outcomes = outcomes.into_iter();
                for job in batch.drain(..) {
                    let answers = outcomes.by_ref().take(job.appends.len()).collect();
                    let _ = job.reply.send(answers);
                }
            }
            Err(e) => {
                tracing::error!(error = %e, appends, "group commit failed");
                for job in batch.drain(..) {
                    let answers = job
                        .appends
                        .iter()
                        .map(|_| Err(AppendError::Store(unavailable(&e))))
                        .collect();
                    let _ = job.reply.send(answers);
                }
            }
        }
    }
}

/// One write transaction for the whole batch. An `Err` means nothing in the batch was committed.
/// Outcomes come in the order of the jobs and of the appends within each.
fn commit_batch(
    db: &Database,
    batch: &[Job],
) -> Result<Vec<Result<CommitRecord, AppendError>>, StoreError> {
    let mut tx = db.begin_write().map_err(unavailable)?;
    tx.set_durability(Durability::Immediate)
        .map_err(unavailable)?;
    let mut outcomes = Vec::with_capacity(batch.len());
    {
        let mut events = tx.open_table(EVENTS).map_err(unavailable)?;
        let mut heads = tx.open_table(HEADS).map_err(unavailable)?;
        let mut commands = tx.open_table(COMMANDS).map_err(unavailable)?;
        let mut snapshots = tx.open_table(SNAPSHOTS).map_err(unavailable)?;
        for job in batch {
            // A job's appends form a chain (each expects the version the previous one leads to,
            // decided on its state): after the first that fails, none of the rest may commit,
            // even if another writer happened to bring the head to the version it expects.
            let mut broken = false;
            for req in &job.appends {
                let id = req.resource_id.0.as_u128();
                let head = heads
                    .get(id)
                    .map_err(unavailable)?
                    .map(|g| g.value())
                    .unwrap_or(0);
                if broken {
                    outcomes.push(Err(AppendError::Conflict {
                        expected: req.expected_version,
                        actual: head,
                    }));
                    continue;
                }
                let outcome = append_one(
                    req,
                    head,
                    &mut events,
                    &mut heads,
                    &mut commands,
                    &mut snapshots,
                )?;
                broken = outcome.is_err();
                outcomes.push(outcome);
            }
        }
    }
    tx.commit().map_err(unavailable)?;
    Ok(outcomes)
}

type Table<'t, K, V> = redb::Table<'t, K, V>;

/// Checks and writes one append inside the batch's transaction. The outer `Err` is a storage
/// failure (the whole batch fails); the inner one is this append's refusal.
fn append_one(
    req: &AppendRequest,
    head: u64,
    events: &mut Table<'_, (u128, u64), &'static [u8]>,
    heads: &mut Table<'_, u128, u64>,
    commands: &mut Table<'_, u128, (u128, u64, u64)>,
    snapshots: &mut Table<'_, u128, &'static [u8]>,
) -> Result<Result<CommitRecord, AppendError>, StoreError> {
    if let Err(e) = req.validate() {
        return Ok(Err(e.into()));
    }
    let id = req.resource_id.0.as_u128();
    let cmd = req.command_id.0.as_u128();
    if let Some(rec) = commands.get(cmd).map_err(unavailable)? {
        let (rid, first, last) = rec.value();
        return Ok(Err(AppendError::Duplicate(CommitRecord {
            resource_id: ResourceId(uuid::Uuid::from_u128(rid)),
            command_id: req.command_id,
            first_version: first,
            last_version: last,
        })));
    }
    if head != req.expected_version {
        return Ok(Err(AppendError::Conflict {
            expected: req.expected_version,
            actual: head,
        }));
    }
    let mut version = head;
    for event in &req.events {
        version += 1;
        events
            .insert((id, version), encode(event)?.as_slice())
            .map_err(unavailable)?;
    }
    heads.insert(id, version).map_err(unavailable)?;
    commands
        .insert(cmd, (id, head + 1, version))
        .map_err(unavailable)?;
    if let Some(snapshot) = &req.snapshot {
        snapshots
            .insert(id, encode(snapshot)?.as_slice())
            .map_err(unavailable)?;
    }
    Ok(Ok(CommitRecord {
        resource_id: req.resource_id,
        command_id: req.command_id,
        first_version: head + 1,
        last_version: version,
    }))
}

fn read_events(
    tx: &redb::ReadTransaction,
    id: ResourceId,
    after_version: u64,
    limit: usize,
) -> Result<Vec<EventEnvelope>, StoreError> {
    let table = tx.open_table(EVENTS).map_err(unavailable)?;
    let key = id.0.as_u128();
    let Some(start) = after_version.checked_add(1) else {
        return Ok(Vec::new());
    };
    table
        .range((key, start)..=(key, u64::MAX))
        .map_err(unavailable)?
        .take(limit)
        .map(|row| {
            let (_, v) = row.map_err(unavailable)?;
            decode(v.value())
        })
        .collect()
}

#[async_trait]
impl EventStore for EmbeddedStore {
    async fn append(&self, req: AppendRequest) -> Result<CommitRecord, AppendError> {
        self.append_many(vec![req])
            .await
            .pop()
            .unwrap_or_else(|| Err(unavailable("the group-commit writer gave no outcome").into()))
    }

    async fn append_many(
        &self,
        appends: Vec<AppendRequest>,
    ) -> Vec<Result<CommitRecord, AppendError>> {
        let count = appends.len();
        let failed = |why: &str| {
            (0..count)
                .map(|_| Err(unavailable(why).into()))
                .collect::<Vec<_>>()
        };
        if count == 0 {
            return Vec::new();
        }
        let (reply, answer) = oneshot::channel();
        if self.writer.send(Job { appends, reply }).await.is_err() {
            return failed("the store is closing");
        }
        answer
            .await
            .unwrap_or_else(|_| failed("the group-commit writer stopped"))
    }

    async fn load(&self, id: ResourceId) -> Result<Loaded, StoreError> {
        self.read(|tx| {
            let snaps = tx.open_table(SNAPSHOTS).map_err(unavailable)?;
            let snapshot: Option<ServerResource> =
                match snaps.get(id.0.as_u128()).map_err(unavailable)? {
                    Some(bytes) => Some(decode(bytes.value())?),
                    None => None,
                };
            let after = snapshot.as_ref().map_or(0, |s| s.version);
            let events = read_events(tx, id, after, usize::MAX)?;
            Ok(Loaded { snapshot, events })
        })
    }

    async fn events(
        &self,
        id: ResourceId,
        after_version: u64,
        limit: usize,
    ) -> Result<Vec<EventEnvelope>, StoreError> {
        self.read(|tx| read_events(tx, id, after_version, limit))
    }

    async fn find_command(
        &self,
        command_id: CommandId,
    ) -> Result<Option<CommitRecord>, StoreError> {
        self.read(|tx| {
            let table = tx.open_table(COMMANDS).map_err(unavailable)?;
            Ok(table
                .get(command_id.0.as_u128())
                .map_err(unavailable)?
                .map(|g| {
                    let (rid, first, last) = g.value();
                    CommitRecord {
                        resource_id: ResourceId(uuid::Uuid::from_u128(rid)),
                        command_id,
                        first_version: first,
                        last_version: last,
                    }
                }))
        })
    }

    async fn head(&self, id: ResourceId) -> Result<u64, StoreError> {
        self.read(|tx| {
            let table = tx.open_table(HEADS).map_err(unavailable)?;
            Ok(table
                .get(id.0.as_u128())
                .map_err(unavailable)?
                .map_or(0, |g| g.value()))
        })
    }

    async fn resource_ids(&self) -> Result<Vec<ResourceId>, StoreError> {
        self.read(|tx| {
            let table = tx.open_table(HEADS).map_err(unavailable)?;
            table
                .iter()
                .map_err(unavailable)?
                .map(|row| {
                    Ok(ResourceId(uuid::Uuid::from_u128(
                        row.map_err(unavailable)?.0.value(),
                    )))
                })
                .collect()
        })
    }
}

#[async_trait]
impl ReadModelStore for EmbeddedStore {
    async fn upsert(&self, views: Vec<ClientResource>) -> Result<(), StoreError> {
        let db = self.views.clone();
        tokio::task::spawn_blocking(move || {
            let tx = db.begin_write().map_err(unavailable)?;
            {
                let mut table = tx.open_table(VIEWS).map_err(unavailable)?;
                let mut owners = tx.open_table(BY_OWNER).map_err(unavailable)?;
                for view in &views {
                    let key = view.id.0.as_u128();
                    let stored: Option<ClientResource> =
                        match table.get(key).map_err(unavailable)? {
                            Some(bytes) => Some(decode(bytes.value())?),
                            None => None,
                        };
                    if stored.as_ref().is_some_and(|s| s.version >= view.version) {
                        continue;
                    }
                    table
                        .insert(key, encode(view)?.as_slice())
                        .map_err(unavailable)?;
                    if stored.is_none() {
                        owners
                            .insert((view.owner.as_str(), key), ())
                            .map_err(unavailable)?;
                    }
                }
            }
            tx.commit().map_err(unavailable)
        })
        .await
        .map_err(unavailable)?
    }

    async fn get(&self, id: ResourceId) -> Result<Option<ClientResource>, StoreError> {
        let tx = self.views.begin_read().map_err(unavailable)?;
        let table = tx.open_table(VIEWS).map_err(unavailable)?;
        match table.get(id.0.as_u128()).map_err(unavailable)? {
            Some(bytes) => Ok(Some(decode(bytes.value())?)),
            None => Ok(None),
        }
    }

    async fn list_by_owner(&self, owner: &PlayerId) -> Result<Vec<ClientResource>, StoreError> {
        let tx = self.views.begin_read().map_err(unavailable)?;
        let owners = tx.open_table(BY_OWNER).map_err(unavailable)?;
        let table = tx.open_table(VIEWS).map_err(unavailable)?;
        let o = owner.as_str();
        let mut out = Vec::new();
        for row in owners
            .range((o, 0u128)..=(o, u128::MAX))
            .map_err(unavailable)?
        {
            let (k, _) = row.map_err(unavailable)?;
            if let Some(bytes) = table.get(k.value().1).map_err(unavailable)? {
                out.push(decode(bytes.value())?);
            }
        }
        Ok(out)
    }

    async fn clear(&self) -> Result<(), StoreError> {
        let tx = self.views.begin_write().map_err(unavailable)?;
        tx.delete_table(VIEWS).map_err(unavailable)?;
        tx.delete_table(BY_OWNER).map_err(unavailable)?;
        tx.open_table(VIEWS).map_err(unavailable)?;
        tx.open_table(BY_OWNER).map_err(unavailable)?;
        tx.commit().map_err(unavailable)
    }
}
