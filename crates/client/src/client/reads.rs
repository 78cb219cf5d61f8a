//! The reads of a [`Client`]: a resource now, an owner's resources, the audit trail, a past state.

use super::*;

/// A point in a resource's past, for [`Client::state_at`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum At {
    /// Right after event `version` (1 … the current version).
    Version(u64),
    /// As the resource stood at this instant, regeneration and lock expiry brought forward to it.
    Time(Timestamp),
}

/// A resource as it was ([`Client::state_at`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PastState {
    /// The last event folded in.
    pub version: u64,
    /// The view of the resource then.
    pub resource: ClientResource,
}

impl Client {
    /// One resource's current view; shows every command acknowledged before it was sent.
    pub async fn get(&self, resource_id: ResourceId) -> Result<ClientResource, ClientError> {
        match self
            .request(|req| ClientMessage::Get(Get { req, resource_id }))
            .await?
        {
            ServerMessage::Resource { resource, .. } => Ok(resource),
            other => Err(unexpected("resource", &other)),
        }
    }

    /// The resources of `owner` (`None`: the caller's), ordered by id (creation time).
    pub async fn list(&self, owner: Option<&PlayerId>) -> Result<Vec<ClientResource>, ClientError> {
        let owner = owner.cloned();
        match self
            .request(|req| ClientMessage::List(List { req, owner }))
            .await?
        {
            ServerMessage::Resources { resources, .. } => Ok(resources),
            other => Err(unexpected("resources", &other)),
        }
    }

    /// One page of a resource's audit trail: the events after `after_version`, at most `limit`
    /// (default and cap 1000). Page on with the last version received until a page is empty.
    pub async fn history(
        &self,
        resource_id: ResourceId,
        after_version: u64,
        limit: Option<u32>,
    ) -> Result<Vec<HistoryEvent>, ClientError> {
        match self
            .request(|req| {
                ClientMessage::History(History {
                    req,
                    resource_id,
                    after_version,
                    limit,
                })
            })
            .await?
        {
            ServerMessage::History { events, .. } => Ok(events),
            other => Err(unexpected("history", &other)),
        }
    }

    /// The resource as it was at `at` (time travel, rebuilt from its log).
    pub async fn state_at(
        &self,
        resource_id: ResourceId,
        at: At,
    ) -> Result<PastState, ClientError> {
        let (version, at) = match at {
            At::Version(v) => (Some(v), None),
            At::Time(t) => (None, Some(t)),
        };
        match self
            .request(|req| {
                ClientMessage::StateAt(StateAt {
                    req,
                    resource_id,
                    version,
                    at,
                })
            })
            .await?
        {
            ServerMessage::State {
                version, resource, ..
            } => Ok(PastState { version, resource }),
            other => Err(unexpected("state", &other)),
        }
    }

    // ------------------------------------------------------------------ subscriptions
}
