//! The commit feed: what a node reads to notice the commits *other* nodes make to a shared log,
//! in domain terms. The relay (`crate::relay`) is its one reader; a shared backend implements it
//! (the MongoDB store does, in `store::mongo::feed`), and how it finds commits (queries, a change
//! stream) stays inside the backend.
//!
//! Everything here is a hint to look at the log sooner: readers still take order and completeness
//! from the per-resource log, so a feed may show a commit twice or late, never wrongly.

use crate::domain::{EventEnvelope, PlayerId, ResourceId, ServerResource};
use crate::store::StoreError;
use async_trait::async_trait;
use futures::stream::BoxStream;
use std::any::Any;
use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

/// One command's commit, with its events.
#[derive(Clone, Debug)]
pub struct Commit {
    pub resource_id: ResourceId,
    pub first_version: u64,
    pub last_version: u64,
    /// True when this node made it (through this store): the actor that made it has already
    /// published it on this node.
    pub by_this_node: bool,
    pub events: Vec<EventEnvelope>,
}

/// A commit another node made, as a stream of notices tells it.
#[derive(Clone, Debug)]
pub struct Notice {
    pub resource_id: ResourceId,
    /// Hands back to [`CommitFeed::notices`] to resume right after this notice.
    pub resume: Option<ResumeToken>,
}

/// Notices of other nodes' commits, in commit order. The stream ends after its first `Err`
/// (the backend interrupted it); open another, with the last resume token, to go on.
pub type Notices = BoxStream<'static, Result<Notice, StoreError>>;

/// Where a stream of notices stood. Opaque: only the feed that issued it reads it.
#[derive(Clone)]
pub struct ResumeToken(Arc<dyn Any + Send + Sync>);

impl ResumeToken {
    /// Wraps a backend's own token.
    pub fn new<T: Any + Send + Sync>(token: T) -> Self {
        ResumeToken(Arc::new(token))
    }

    /// The backend's token, if it is a `T`.
    pub fn get<T: Any>(&self) -> Option<&T> {
        self.0.downcast_ref()
    }
}

impl fmt::Debug for ResumeToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ResumeToken(..)")
    }
}

/// Reads of a shared log made to follow other nodes' commits. Every read takes a batch, so
/// following thousands of resources costs a few reads, not one per resource.
#[async_trait]
pub trait CommitFeed: Send + Sync + 'static {
    /// For each `(resource, version)`, the commits of that resource whose last version is after
    /// `version`, in one read: ordered by resource, then version; at most `limit` in all (the
    /// rest come with a later call).
    async fn commits_after(
        &self,
        known: &[(ResourceId, u64)],
        limit: usize,
    ) -> Result<Vec<Commit>, StoreError>;

    /// The latest snapshots of several resources, in one read (a resource without one is
    /// absent).
    async fn snapshots(
        &self,
        ids: &[ResourceId],
    ) -> Result<HashMap<ResourceId, ServerResource>, StoreError>;

    /// Each owner's resources as the shared read model lists them, in one read.
    async fn resources_of_owners(
        &self,
        owners: &[PlayerId],
    ) -> Result<HashMap<PlayerId, Vec<ResourceId>>, StoreError>;

    /// Opens a stream of notices of the commits other nodes make from now on or, given
    /// `resume`, from right after the notice it came with. Fails when the backend cannot stream
    /// (the reader then polls [`commits_after`](Self::commits_after)) or can no longer resume
    /// from `resume`.
    async fn notices(&self, resume: Option<ResumeToken>) -> Result<Notices, StoreError>;
}
