//! What each request does once decoded: commands through the actors, queries from the read model
//! and the log, each with its authorization. Every function answers with a [`ServerMessage`].
//!
//! Read authorization: the owner and services see the owner view; anyone else (another player, a
//! spectator) sees the spectator view of get, list and subscribe; history (the audit trail, with
//! reasons) is for the owner and services only. `state_at` (a past state) follows the same rule as
//! `history` for the owner view, and gives anyone else the spectator view of that past state.

use crate::actor::{CommandError, CommandRequest};
use crate::domain::{
    ClientResource, Command, CommandId, EventEnvelope, PlayerId, Principal, ResourceEvent,
    ResourceId, Timestamp, View,
};
use crate::metrics::Outcome;
use crate::node::Node;
use crate::projection::time_travel::{StateAtError, StatePoint};
use crate::protocol::{HistoryEvent, RequestId, ServerMessage};
use crate::store::StoreError;
use std::sync::Arc;

/// Default and largest page of `history`.
pub const HISTORY_PAGE: u32 = 1_000;

pub(crate) fn error(
    req: Option<RequestId>,
    code: &str,
    message: impl Into<String>,
) -> ServerMessage {
    ServerMessage::Error {
        req,
        code: code.to_owned(),
        message: message.into(),
    }
}

/// An infrastructure fault: the detail goes to the log, the client gets a code.
fn unavailable(req: RequestId, e: StoreError) -> ServerMessage {
    tracing::warn!(error = %e, "request failed on the store");
    error(Some(req), "unavailable", "storage unavailable; retry")
}

/// Which view of `owner`'s resources `principal` gets.
pub(crate) fn view_for(principal: &Principal, owner: &PlayerId) -> View {
    if principal.is_trusted() || &principal.player == owner {
        View::Owner
    } else {
        View::Spectator
    }
}

pub(crate) async fn command(
    node: Arc<Node>,
    principal: Principal,
    req: RequestId,
    command_id: CommandId,
    command: Command,
    received: std::time::Instant,
) -> ServerMessage {
    let kind = crate::metrics::command_kind(&command);
    let outcome = node
        .registry
        .execute(CommandRequest {
            command_id,
            principal,
            command,
        })
        .await;
    let counted = match &outcome {
        Ok(reply) if reply.duplicate => Outcome::Duplicate,
        Ok(_) => Outcome::Applied,
        Err(e) => Outcome::Refused(e.code()),
    };
    node.metrics.command(kind, counted, received);
    tracing::debug!(
        %command_id,
        kind = kind.map_or("expire_lock", |k| crate::metrics::COMMAND_KINDS[k]),
        outcome = ?counted,
        "command answered"
    );
    match outcome {
        Ok(reply) => ServerMessage::Applied {
            req,
            command_id,
            resource_id: reply.resource_id,
            version: reply.version,
            resource: reply.view(),
            duplicate: reply.duplicate,
        },
        Err(CommandError::Store(e)) => unavailable(req, e),
        Err(e) => error(Some(req), e.code(), e.to_string()),
    }
}

/// The view of one resource: from the read model when it is current, else from the log (the
/// read model trails commits by a moment; a client that just got `applied` expects to read it).
async fn find(node: &Node, id: ResourceId) -> Result<Option<ClientResource>, StoreError> {
    if let Some(view) = node.queries.get(id).await?
        && view.version >= node.store.head(id).await?
    {
        return Ok(Some(view));
    }
    Ok(node
        .store
        .load(id)
        .await?
        .state()
        .map(|s| ClientResource::from_server(&s)))
}

pub(crate) async fn get(
    node: Arc<Node>,
    principal: Principal,
    req: RequestId,
    id: ResourceId,
) -> ServerMessage {
    match find(&node, id).await {
        Ok(Some(view)) => ServerMessage::Resource {
            req,
            resource: view.redact(view_for(&principal, &view.owner)),
        },
        Ok(None) => error(Some(req), "not_found", format!("resource {id} not found")),
        Err(e) => unavailable(req, e),
    }
}

pub(crate) async fn list(
    node: Arc<Node>,
    principal: Principal,
    req: RequestId,
    owner: Option<PlayerId>,
) -> ServerMessage {
    let owner = owner.unwrap_or_else(|| principal.player.clone());
    let view = view_for(&principal, &owner);
    match node.queries.list_by_owner(&owner).await {
        Ok(list) => ServerMessage::Resources {
            req,
            resources: list.into_iter().map(|r| r.redact(view)).collect(),
        },
        Err(e) => unavailable(req, e),
    }
}

pub(crate) async fn history(
    node: Arc<Node>,
    principal: Principal,
    req: RequestId,
    id: ResourceId,
    after_version: u64,
    limit: Option<u32>,
) -> ServerMessage {
    let owner = match find(&node, id).await {
        Ok(Some(view)) => view.owner,
        Ok(None) => return error(Some(req), "not_found", format!("resource {id} not found")),
        Err(e) => return unavailable(req, e),
    };
    if view_for(&principal, &owner) != View::Owner {
        return error(
            Some(req),
            "forbidden",
            "only the owner or a service may read a resource's history",
        );
    }
    let limit = limit.unwrap_or(HISTORY_PAGE).clamp(1, HISTORY_PAGE) as usize;
    match node.queries.history(id, after_version, limit).await {
        Ok(events) => ServerMessage::History {
            req,
            resource_id: id,
            events: events.iter().map(history_event).collect(),
        },
        Err(e) => unavailable(req, e),
    }
}

/// A resource's state at a past version or instant, rebuilt from its log: the owner view for the
/// owner and services (as `history`), the spectator view for anyone else.
pub(crate) async fn state_at(
    node: Arc<Node>,
    principal: Principal,
    req: RequestId,
    id: ResourceId,
    version: Option<u64>,
    at: Option<Timestamp>,
) -> ServerMessage {
    let point = match (version, at) {
        (Some(v), None) => StatePoint::Version(v),
        (None, Some(t)) => StatePoint::At(t),
        _ => {
            return error(
                Some(req),
                "bad_message",
                "state_at needs exactly one of `version` and `at`",
            );
        }
    };
    match node.queries.state_at(id, point).await {
        Ok(state) => {
            let view = ClientResource::from_server(&state);
            ServerMessage::State {
                req,
                resource_id: id,
                version: state.version,
                resource: view.redact(view_for(&principal, &state.owner)),
            }
        }
        Err(StateAtError::NotFound) => {
            error(Some(req), "not_found", format!("resource {id} not found"))
        }
        Err(e @ StateAtError::InvalidVersion { .. }) => {
            error(Some(req), "invalid_version", e.to_string())
        }
        Err(e @ StateAtError::BeforeCreation { .. }) => {
            error(Some(req), "before_creation", e.to_string())
        }
        Err(StateAtError::Store(e)) => unavailable(req, e),
    }
}

/// One stored event as the audit trail shows it to a client.
pub(crate) fn history_event(e: &EventEnvelope) -> HistoryEvent {
    let (amount, balance, reason) = match &e.event {
        ResourceEvent::ResourceCreated { balance, .. } => (None, Some(balance.amount), None),
        ResourceEvent::ResourceAllocated {
            amount,
            reason,
            balance,
            ..
        }
        | ResourceEvent::ResourceAdded {
            amount,
            reason,
            balance,
            ..
        } => (Some(*amount), Some(balance.amount), Some(reason.clone())),
        ResourceEvent::ResourceLocked { reason, .. } => (None, None, Some(reason.clone())),
        ResourceEvent::ResourceUnlocked { .. } | ResourceEvent::ResourceLockExpired { .. } => {
            (None, None, None)
        }
    };
    HistoryEvent {
        version: e.version,
        event_type: e.event.type_name().to_owned(),
        at: e.at,
        command_id: e.command_id,
        amount,
        balance,
        reason,
    }
}
