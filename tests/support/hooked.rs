//! An event store that delegates to another and lets a test step into its appends: hold them, fail
//! them, answer with a conflict, or count them. Reads pass straight through.

use async_trait::async_trait;
use futures::future::BoxFuture;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use warden::domain::{CommandId, EventEnvelope, ResourceId};
use warden::store::{AppendError, AppendRequest, CommitRecord, EventStore, Loaded, StoreError};

/// What a hook may answer for an append instead of the store: `None` lets it through.
pub type Verdict = Option<Result<CommitRecord, AppendError>>;

type BeforeAppend = Box<dyn Fn(&AppendRequest) -> BoxFuture<'static, Verdict> + Send + Sync>;

/// The hooks of a [`HookedStore`] and what it counted; shared (`Arc`) between the test and the
/// store, so the test can read the counts and steer a hook while the node runs.
#[derive(Default)]
pub struct Hooks {
    /// Runs before each append reaches the store; may wait (the store's caller waits with it) or
    /// answer in the store's place.
    before_append: Option<BeforeAppend>,
    /// Appends that reached the hooked store (before the hook ran).
    arrived: AtomicU64,
    /// Appends the store (or the hook) answered with a version conflict.
    conflicts: AtomicU64,
}

impl Hooks {
    /// No hook: the store only counts.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the hook run before each append. Its future must own what it uses (`async move`).
    pub fn before_append<F, Fut>(mut self, hook: F) -> Self
    where
        F: Fn(&AppendRequest) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Verdict> + Send + 'static,
    {
        self.before_append = Some(Box::new(move |req| Box::pin(hook(req))));
        self
    }

    /// Appends that reached the store so far.
    pub fn arrived(&self) -> u64 {
        self.arrived.load(Ordering::SeqCst)
    }

    /// Appends answered with a version conflict so far.
    pub fn conflicts(&self) -> u64 {
        self.conflicts.load(Ordering::SeqCst)
    }
}

/// An [`EventStore`] over `inner` whose appends go through [`Hooks`].
///
/// `append_many` is the trait's default on purpose: each link of an actor's chain goes through
/// [`append`](EventStore::append), so the hooks see every append (and the inner store's own
/// `append_many` is not used).
pub struct HookedStore {
    inner: Arc<dyn EventStore>,
    hooks: Arc<Hooks>,
}

impl HookedStore {
    pub fn new(inner: Arc<dyn EventStore>, hooks: Arc<Hooks>) -> Self {
        Self { inner, hooks }
    }
}

#[async_trait]
impl EventStore for HookedStore {
    async fn append(&self, req: AppendRequest) -> Result<CommitRecord, AppendError> {
        self.hooks.arrived.fetch_add(1, Ordering::SeqCst);
        let verdict = match &self.hooks.before_append {
            Some(hook) => hook(&req).await,
            None => None,
        };
        let outcome = match verdict {
            Some(outcome) => outcome,
            None => self.inner.append(req).await,
        };
        if matches!(outcome, Err(AppendError::Conflict { .. })) {
            self.hooks.conflicts.fetch_add(1, Ordering::SeqCst);
        }
        outcome
    }

    async fn load(&self, id: ResourceId) -> Result<Loaded, StoreError> {
        self.inner.load(id).await
    }

    async fn events(
        &self,
        id: ResourceId,
        after_version: u64,
        limit: usize,
    ) -> Result<Vec<EventEnvelope>, StoreError> {
        self.inner.events(id, after_version, limit).await
    }

    async fn find_command(&self, id: CommandId) -> Result<Option<CommitRecord>, StoreError> {
        self.inner.find_command(id).await
    }

    async fn head(&self, id: ResourceId) -> Result<u64, StoreError> {
        self.inner.head(id).await
    }

    async fn resource_ids(&self) -> Result<Vec<ResourceId>, StoreError> {
        self.inner.resource_ids().await
    }
}
