//! The read side: the updater that keeps the client-schema read model in step with committed
//! changes, and the query handler that answers from it (and from the log, for history and for a
//! resource's state at a past version or instant: [`time_travel`]).
//!
//! The read model is a projection: idempotent by version (an older or repeated view never
//! replaces a newer one) and rebuildable from the event log at any time with [`rebuild`].

pub mod time_travel;

use crate::bus::Hub;
use crate::domain::{ClientResource, EventEnvelope, PlayerId, ResourceId};
use crate::store::{EventStore, ReadModelStore, StoreError};
use std::sync::Arc;
use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;

/// Most views the updater writes in one read-model transaction.
pub const UPDATE_BATCH: usize = 1024;

/// Brings every view whose version is behind the log up to date. Cost: one head read per resource.
pub async fn catch_up(
    store: &dyn EventStore,
    read: &dyn ReadModelStore,
) -> Result<usize, StoreError> {
    let mut updated = 0;
    for id in store.resource_ids().await? {
        let head = store.head(id).await?;
        let have = read.get(id).await?.map_or(0, |v| v.version);
        if have < head {
            if let Some(state) = store.load(id).await?.state() {
                read.upsert(vec![ClientResource::from_server(&state)])
                    .await?;
                updated += 1;
            }
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

/// Keeps the read model current from the hub until `stop` is cancelled.
///
/// It subscribes before catching up, so no change falls between the two; if it ever lags behind
/// the hub's buffer it catches up from the log again. A failed write is logged and the next
/// catch-up repairs it.
pub async fn run_updater(
    store: Arc<dyn EventStore>,
    read: Arc<dyn ReadModelStore>,
    hub: Arc<Hub>,
    stop: CancellationToken,
) {
    let mut changes = hub.subscribe_all();
    let mut need_catch_up = true;
    loop {
        if need_catch_up {
            match catch_up(store.as_ref(), read.as_ref()).await {
                Ok(n) => {
                    need_catch_up = false;
                    if n > 0 {
                        tracing::info!(views = n, "read model caught up from the log");
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "read-model catch-up failed; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(std::time::Duration::from_secs(1)) => continue,
                        _ = stop.cancelled() => return,
                    }
                }
            }
        }
        let first = tokio::select! {
            r = changes.recv() => r,
            _ = stop.cancelled() => {
                // Write what is already published before stopping; anything missed is caught up
                // from the log at the next start.
                let mut rest = Vec::new();
                while let Ok(change) = changes.try_recv() {
                    rest.push(change.view.clone());
                }
                if !rest.is_empty() {
                    let _ = read.upsert(rest).await;
                }
                return;
            }
        };
        let mut batch = Vec::new();
        match first {
            Ok(change) => batch.push(change.view.clone()),
            Err(RecvError::Lagged(_)) => {
                need_catch_up = true;
                continue;
            }
            Err(RecvError::Closed) => return,
        }
        while batch.len() < UPDATE_BATCH {
            match changes.try_recv() {
                Ok(change) => batch.push(change.view.clone()),
                Err(tokio::sync::broadcast::error::TryRecvError::Lagged(_)) => {
                    need_catch_up = true;
                    break;
                }
                Err(_) => break,
            }
        }
        if let Err(e) = read.upsert(batch).await {
            tracing::warn!(error = %e, "read-model update failed; will catch up from the log");
            need_catch_up = true;
        }
    }
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

    /// Waits (up to `timeout`) until the read model shows `id` at `version` or later.
    pub async fn wait_for(
        &self,
        id: ResourceId,
        version: u64,
        timeout: std::time::Duration,
    ) -> Result<Option<ClientResource>, StoreError> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let view = self.read.get(id).await?;
            if view.as_ref().is_some_and(|v| v.version >= version)
                || tokio::time::Instant::now() >= deadline
            {
                return Ok(view);
            }
            tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        }
    }
}
