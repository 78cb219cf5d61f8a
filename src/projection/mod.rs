//! The read side: the query handler that answers from the client-schema read model (and from the
//! log, for history and for a resource's state at a past version or instant: [`time_travel`]),
//! and the tools that repair or rebuild the read model from the log.
//!
//! The read model is a projection: every backend writes a resource's view with its commit (the
//! embedded store in the same atomic batch), idempotent by version (an older or repeated view
//! never replaces a newer one), and it can be rebuilt from the event log at any time with
//! [`rebuild`]. [`catch_up`] repairs views a crash left behind where the view is written after the
//! commit (MongoDB).

pub mod time_travel;

use crate::domain::{ClientResource, EventEnvelope, PlayerId, ResourceId};
use crate::store::{EventStore, ReadModelStore, StoreError};
use std::sync::Arc;

/// Brings every view whose version is behind the log up to date. Cost: one head read per resource.
pub async fn catch_up(
    store: &dyn EventStore,
    read: &dyn ReadModelStore,
) -> Result<usize, StoreError> {
    let mut updated = 0;
    for id in store.resource_ids().await? {
        let head = store.head(id).await?;
        let have = read.get(id).await?.map_or(0, |v| v.version);
        if have < head
            && let Some(state) = store.load(id).await?.state()
        {
            read.upsert(vec![ClientResource::from_server(&state)])
                .await?;
            updated += 1;
        }
    }
    Ok(updated)
}

/// Forgets the read model and rebuilds it by replaying every resource's whole log (not its
/// snapshot). Returns how many views were written.
pub async fn rebuild(
    store: &dyn EventStore,
    read: &dyn ReadModelStore,
) -> Result<usize, StoreError> {
    read.clear().await?;
    let mut written = 0;
    for id in store.resource_ids().await? {
        let log = store.events(id, 0, usize::MAX).await?;
        if let Some(state) = crate::domain::replay(None, &log) {
            read.upsert(vec![ClientResource::from_server(&state)])
                .await?;
            written += 1;
        }
    }
    Ok(written)
}

/// Answers queries: views from the read model, history from the event log.
#[derive(Clone)]
pub struct QueryHandler {
    store: Arc<dyn EventStore>,
    read: Arc<dyn ReadModelStore>,
}

impl QueryHandler {
    pub fn new(store: Arc<dyn EventStore>, read: Arc<dyn ReadModelStore>) -> Self {
        Self { store, read }
    }

    pub async fn get(&self, id: ResourceId) -> Result<Option<ClientResource>, StoreError> {
        self.read.get(id).await
    }

    pub async fn list_by_owner(&self, owner: &PlayerId) -> Result<Vec<ClientResource>, StoreError> {
        self.read.list_by_owner(owner).await
    }

    /// The audit trail: up to `limit` events after `after_version`, in order.
    pub async fn history(
        &self,
        id: ResourceId,
        after_version: u64,
        limit: usize,
    ) -> Result<Vec<EventEnvelope>, StoreError> {
        self.store.events(id, after_version, limit).await
    }

    /// `id`'s state at a past version or instant, rebuilt from its log.
    pub async fn state_at(
        &self,
        id: ResourceId,
        point: time_travel::StatePoint,
    ) -> Result<crate::domain::ServerResource, time_travel::StateAtError> {
        time_travel::state_at(self.store.as_ref(), id, point).await
    }
}
