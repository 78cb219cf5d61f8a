//! An event store that delegates to another and lets a test step into its appends: hold them, fail
//! them, answer with a conflict, or count them. Reads pass straight through.

use async_trait::async_trait;
use futures::future::BoxFuture;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use warden_core::domain::{CommandId, EventEnvelope, ResourceId};
use warden_core::store::{
    AppendError, AppendRequest, CommitRecord, EventStore, Loaded, StoreError,
};

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

/// An [`EventStore`] over `inner` whose appends go through [`Hooks`]: the hook sees every link
/// of an actor's chain, in order, and what it lets through is committed by the inner store's
/// own `append_many` (the production commit path).
pub struct HookedStore {
    inner: Arc<dyn EventStore>,
    hooks: Arc<Hooks>,
}

impl HookedStore {
    pub fn new(inner: Arc<dyn EventStore>, hooks: Arc<Hooks>) -> Self {
        Self { inner, hooks }
    }

    /// What the hook answers for `req` in the store's place (`None`: let it through).
    async fn verdict(&self, req: &AppendRequest) -> Verdict {
        match &self.hooks.before_append {
            Some(hook) => hook(req).await,
            None => None,
        }
    }

    /// Commits the links let through so far with the inner store's `append_many`; true if one
    /// of them failed.
    async fn commit_run(
        &self,
        run: &mut Vec<AppendRequest>,
        outcomes: &mut Vec<Result<CommitRecord, AppendError>>,
    ) -> bool {
        if run.is_empty() {
            return false;
        }
        let committed = self.inner.append_many(std::mem::take(run)).await;
        let failed = committed.iter().any(Result::is_err);
        outcomes.extend(committed);
        failed
    }

    /// A link after a failed one: a conflict against the stored head.
    async fn conflict(&self, req: &AppendRequest) -> Result<CommitRecord, AppendError> {
        match self.inner.head(req.resource_id).await {
            Ok(actual) => Err(AppendError::Conflict {
                expected: req.expected_version,
                actual,
            }),
            Err(e) => Err(e.into()),
        }
    }
}

#[async_trait]
impl EventStore for HookedStore {
    async fn append(&self, req: AppendRequest) -> Result<CommitRecord, AppendError> {
        self.hooks.arrived.fetch_add(1, Ordering::SeqCst);
        let outcome = match self.verdict(&req).await {
            Some(outcome) => outcome,
            None => self.inner.append(req).await,
        };
        if matches!(outcome, Err(AppendError::Conflict { .. })) {
            self.hooks.conflicts.fetch_add(1, Ordering::SeqCst);
        }
        outcome
    }

    /// The hook runs on each link in order; the links it lets through are committed together by
    /// the inner store's `append_many`, a link it answers gets its answer, and once a link has
    /// failed every later one is a conflict, as every store answers a broken chain.
    async fn append_many(
        &self,
        reqs: Vec<AppendRequest>,
    ) -> Vec<Result<CommitRecord, AppendError>> {
        let mut outcomes = Vec::with_capacity(reqs.len());
        let mut run = Vec::new();
        let mut broken = false;
        for req in reqs {
            if broken {
                outcomes.push(self.conflict(&req).await);
                continue;
            }
            self.hooks.arrived.fetch_add(1, Ordering::SeqCst);
            if let Some(verdict) = self.verdict(&req).await {
                broken = self.commit_run(&mut run, &mut outcomes).await;
                let outcome = if broken {
                    self.conflict(&req).await
                } else {
                    verdict
                };
                broken = outcome.is_err();
                outcomes.push(outcome);
            } else {
                run.push(req);
            }
        }
        self.commit_run(&mut run, &mut outcomes).await;
        let conflicts = outcomes
            .iter()
            .filter(|o| matches!(o, Err(AppendError::Conflict { .. })))
            .count();
        self.hooks
            .conflicts
            .fetch_add(conflicts as u64, Ordering::SeqCst);
        outcomes
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
