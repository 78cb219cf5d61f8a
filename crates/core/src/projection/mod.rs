//! The read side: the query handler that answers from the client-schema read model (and from the
//! log, for history and for a resource's state at a past version or instant: [`time_travel`]),
//! and the tools that repair or rebuild the read model from the log.
//!
//! The read model is a projection: every backend makes a resource's view readable with its commit
//! (the embedded store from memory until its next view checkpoint, with the resources each batch
//! touched recorded in the batch, so a crash leaves no view behind unnoticed), idempotent by
//! version (an older or repeated view never replaces a newer one), and it can be rebuilt from the
//! event log at any time with [`rebuild`]. [`catch_up`] repairs views a crash left behind where the
//! view is written after the commit (MongoDB).

mod replay;
pub mod time_travel;

pub use replay::{LogReplay, REPLAY_PAGE, Replayed};

use crate::clock::Clock;
use crate::domain::{
    Audience, ClientResource, ClientSchema, EventEnvelope, Issuer, PlayerId, Principal, ResourceId,
    ServerResource,
};
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

/// Why a read was refused.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("resource {0} not found")]
    NotFound(ResourceId),
    #[error("only the owner or a service may read a resource's history")]
    Forbidden,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The read side: every read a client can make, with its authorization. Views come from the
/// read model (the client schema); history, past states, subscription bootstrap and gap fills
/// come from the log. The front end (`net`) reads through this and nothing else.
#[derive(Clone)]
pub struct QueryHandler {
    store: Arc<dyn EventStore>,
    read: Arc<dyn ReadModelStore>,
    /// Reads show amounts as of the moment they are answered, by this clock (the actors').
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for QueryHandler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueryHandler").finish_non_exhaustive()
    }
}

impl QueryHandler {
    pub fn new(
        store: Arc<dyn EventStore>,
        read: Arc<dyn ReadModelStore>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self { store, read, clock }
    }

    /// Proves the store answers (readiness): any read will do; the nil id names no resource.
    pub async fn probe(&self) -> Result<(), StoreError> {
        self.store
            .head(ResourceId(uuid::Uuid::nil()))
            .await
            .map(|_| ())
    }

    /// The current view of one resource, read-your-writes: from the read model when it is as
    /// new as the log, else rebuilt from the log (on MongoDB a crash between a commit and its
    /// view leaves the view behind until the node's repair at start).
    pub async fn view(&self, id: ResourceId) -> Result<Option<ClientResource>, StoreError> {
        if let Some(view) = self.read.get(id).await?
            && view.version >= self.store.head(id).await?
        {
            return Ok(Some(view));
        }
        Ok(self
            .store
            .load(id)
            .await?
            .state()
            .map(|s| ClientResource::from_server(&s)))
    }

    /// `get`: one resource as `principal` may see it.
    pub async fn get(
        &self,
        principal: &Principal,
        id: ResourceId,
    ) -> Result<ClientResource, ReadError> {
        let view = self.view(id).await?.ok_or(ReadError::NotFound(id))?;
        let view = self.as_of_now(view, self.clock.now()).await?;
        Ok(view.redact(principal.audience_for(&view.owner)))
    }

    /// `list`: `owner`'s resources as `principal` may see them.
    pub async fn list(
        &self,
        principal: &Principal,
        owner: &PlayerId,
    ) -> Result<Vec<ClientResource>, ReadError> {
        let audience = principal.audience_for(owner);
        let views = self.read.list_by_owner(owner).await?;
        let now = self.clock.now();
        let mut shown = Vec::with_capacity(views.len());
        for view in views {
            shown.push(self.as_of_now(view, now).await?.redact(audience));
        }
        Ok(shown)
    }

    /// The ids of `owner`'s resources, from the read model.
    /// `view` as of `now`, counted exactly as the rules would: from the view when it knows its
    /// regeneration carry, else (a view stored before views kept it) from the write model.
    async fn as_of_now(
        &self,
        view: ClientResource,
        now: crate::domain::Timestamp,
    ) -> Result<ClientResource, StoreError> {
        if view.regen_carry.is_some() || view.regen_milli == Some(0) {
            return Ok(view.as_of(now));
        }
        Ok(match self.store.load(view.id).await?.state() {
            Some(state) => ClientResource::from_server(&state.as_of(now)),
            None => view.as_of(now),
        })
    }

    pub async fn owned(&self, owner: &PlayerId) -> Result<Vec<ResourceId>, ReadError> {
        let views = self.read.list_by_owner(owner).await?;
        Ok(views.into_iter().map(|v| v.id).collect())
    }

    /// The audit trail: up to `limit` events after `after_version`, in order; for the owner and
    /// services only.
    pub async fn history(
        &self,
        principal: &Principal,
        id: ResourceId,
        after_version: u64,
        limit: usize,
    ) -> Result<Vec<EventEnvelope>, ReadError> {
        let owner = self.view(id).await?.ok_or(ReadError::NotFound(id))?.owner;
        if principal.audience_for(&owner) != Audience::Owner {
            return Err(ReadError::Forbidden);
        }
        Ok(self.store.events(id, after_version, limit).await?)
    }

    /// `id` at a past version or instant, rebuilt from its log, as `principal` may see it: the
    /// owner view for the owner and services, the spectator view of that past state for anyone
    /// else. The owner and services also learn who issued the last event folded in.
    pub async fn state_at(
        &self,
        principal: &Principal,
        id: ResourceId,
        point: time_travel::StatePoint,
    ) -> Result<(ClientResource, Option<(PlayerId, Issuer)>), time_travel::StateAtError> {
        let state = time_travel::state_at(self.store.as_ref(), id, point).await?;
        let audience = principal.audience_for(&state.owner);
        let issuer = match audience {
            Audience::Owner => self
                .store
                .events(id, state.version - 1, 1)
                .await?
                .first()
                .map(EventEnvelope::issuer),
            Audience::Spectator => None,
        };
        Ok((ClientResource::from_server(&state).redact(audience), issuer))
    }

    /// What a subscription to `id` starts from: the state now (from the log) and the audience
    /// `principal` is shown it as.
    pub async fn subscription_start(
        &self,
        principal: &Principal,
        id: ResourceId,
    ) -> Result<(Audience, ServerResource), ReadError> {
        let state = self.state(id).await?.ok_or(ReadError::NotFound(id))?;
        let audience = principal.audience_for(&state.owner);
        Ok((audience, state.as_of(self.clock.now())))
    }

    /// What a subscription to `owner` starts from: the audience `principal` is shown the
    /// owner's resources as, and each one's state now (ids from the read model, states from the
    /// log; a resource too new for the read model is picked up at its next change).
    pub async fn owner_subscription_start(
        &self,
        principal: &Principal,
        owner: &PlayerId,
    ) -> Result<(Audience, Vec<ServerResource>), ReadError> {
        let mut states = Vec::new();
        let now = self.clock.now();
        for id in self.owned(owner).await? {
            if let Some(state) = self.state(id).await? {
                states.push(state.as_of(now));
            }
        }
        Ok((principal.audience_for(owner), states))
    }

    /// The current server-schema state, from the log (a subscription starts from it).
    pub async fn state(&self, id: ResourceId) -> Result<Option<ServerResource>, ReadError> {
        Ok(self.store.load(id).await?.state())
    }

    /// Up to `limit` events after `after_version`, from the log (a subscription fills its gaps
    /// with them), without authorization: the caller already has the resource.
    pub async fn events(
        &self,
        id: ResourceId,
        after_version: u64,
        limit: usize,
    ) -> Result<Vec<EventEnvelope>, ReadError> {
        Ok(self.store.events(id, after_version, limit).await?)
    }
}
