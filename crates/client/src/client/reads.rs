//! The reads of a [`Client`]: a resource now, an owner's resources, the audit trail, a past state.

use super::*;
use warden_protocol::IssuerRole;

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
    /// Who issued event `version` (for the owner and services; `None` for anyone else).
    pub by: Option<PlayerId>,
    /// As what it issued it: a player, a service, the server (a lock expiry), or unknown.
    pub by_role: Option<IssuerRole>,
}

impl Client {
    /// One resource's current view; shows every command acknowledged before it was sent.
    pub async fn get(
        &self,
        resource: impl Into<ResourceId>,
    ) -> Result<ClientResource, ClientError> {
        let resource_id = resource.into();
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
        resource: impl Into<ResourceId>,
        after_version: u64,
        limit: Option<u32>,
    ) -> Result<Vec<HistoryEvent>, ClientError> {
        let resource_id = resource.into();
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
        resource: impl Into<ResourceId>,
        at: At,
    ) -> Result<PastState, ClientError> {
        let resource_id = resource.into();
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
                version,
                resource,
                by,
                by_role,
                ..
            } => Ok(PastState {
                version,
                resource,
                by,
                by_role,
            }),
            other => Err(unexpected("state", &other)),
        }
    }

    // ------------------------------------------------------------------ subscriptions
}
