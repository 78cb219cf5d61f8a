//! What each request does once decoded: commands through the actors, reads through the query
//! handler. Each is a plain async function that answers with a reply or a [`RequestError`]
//! (turned into the wire reply in `net::reply`).
//!
//! Read authorization lives with the reads (`projection::QueryHandler`): the owner and services
//! see the owner view; anyone else (another player, a spectator) sees the spectator view of get,
//! list and subscribe; history (the audit trail, with reasons) is for the owner and services
//! only. `state_at` gives the owner view to the owner and services, and the spectator view of
//! that past state to anyone else.

use crate::reply::{Answer, Coded, RequestError};
use crate::request::CommandMessage;
use std::sync::Arc;
use std::time::Instant;
use warden_core::actor::CommandRequest;
use warden_core::domain::{CommandKind, EventEnvelope, Principal, ResourceEvent};
use warden_core::metrics::Outcome;
use warden_core::node::Node;
use warden_core::projection::time_travel::StatePoint;
use warden_protocol::{ErrorCode, Get, History, HistoryEvent, List, ServerMessage, StateAt};

/// Default and largest page of `history`.
pub(super) const HISTORY_PAGE: u32 = 1_000;

/// Runs a command through the resource's actor and counts its outcome.
pub(crate) async fn command(
    node: Arc<Node>,
    principal: Principal,
    msg: CommandMessage,
    received: Instant,
) -> Answer {
    let CommandMessage {
        req,
        command_id,
        command,
    } = msg;
    let kind = CommandKind::from(&command);
    let outcome = node
        .registry()
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
    node.metrics().command(kind, counted, received);
    tracing::debug!(
        %command_id,
        kind = <&str>::from(kind),
        outcome = ?counted,
        "command answered"
    );
    let reply = outcome?;
    Ok(ServerMessage::Applied {
        req,
        command_id,
        resource_id: reply.resource_id,
        version: reply.version,
        resource: reply.view(),
        duplicate: reply.duplicate,
        existing: reply.existing,
    })
}

pub(crate) async fn get(node: Arc<Node>, principal: Principal, msg: Get) -> Answer {
    let resource = node.queries().get(&principal, msg.resource_id).await?;
    Ok(ServerMessage::Resource {
        req: msg.req,
        resource,
    })
}

pub(crate) async fn list(node: Arc<Node>, principal: Principal, msg: List) -> Answer {
    let owner = msg.owner.unwrap_or_else(|| principal.player.clone());
    let resources = node.queries().list(&principal, &owner).await?;
    Ok(ServerMessage::Resources {
        req: msg.req,
        resources,
    })
}

pub(crate) async fn history(node: Arc<Node>, principal: Principal, msg: History) -> Answer {
    let limit = msg.limit.unwrap_or(HISTORY_PAGE).clamp(1, HISTORY_PAGE) as usize;
    let events = node
        .queries()
        .history(&principal, msg.resource_id, msg.after_version, limit)
        .await?;
    Ok(ServerMessage::History {
        req: msg.req,
        resource_id: msg.resource_id,
        events: events.iter().map(history_event).collect(),
    })
}

/// One event of the audit trail as a client sees it: the one conversion of an event to the wire.
fn history_event(e: &EventEnvelope) -> HistoryEvent {
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
    let (by, by_role) = e.issuer();
    HistoryEvent {
        by,
        by_role,
        version: e.version,
        event_type: e.event.type_name().to_owned(),
        at: e.at,
        command_id: e.command_id,
        amount,
        balance,
        reason,
    }
}

/// A resource's state at a past version or instant, rebuilt from its log.
pub(crate) async fn state_at(node: Arc<Node>, principal: Principal, msg: StateAt) -> Answer {
    let point = match (msg.version, msg.at) {
        (Some(v), None) => StatePoint::Version(v),
        (None, Some(t)) => StatePoint::At(t),
        _ => {
            return Err(RequestError::new(
                ErrorCode::BadMessage,
                "state_at needs exactly one of `version` and `at`",
            ));
        }
    };
    let (resource, issuer) = node
        .queries()
        .state_at(&principal, msg.resource_id, point)
        .await?;
    let (by, by_role) = issuer.unzip();
    Ok(ServerMessage::State {
        req: msg.req,
        resource_id: msg.resource_id,
        version: resource.version,
        resource,
        by,
        by_role,
    })
}
