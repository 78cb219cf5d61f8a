//! Events: what happened to a resource, in the past tense, recorded with its results.
//!
//! Every event that changes the amount records the resulting [`Balance`] (amount, regeneration
//! carry and the time regeneration was accounted to), so replay folds events without reading a
//! clock or recomputing regeneration. A shipped event shape is never changed: a new shape gets a
//! new variant or a higher [`EVENT_SCHEMA_VERSION`] with an upcaster.

use crate::domain::{CommandId, PlayerId, ResourceId, Role, Timestamp};
use serde::{Deserialize, Serialize};
pub use warden_protocol::IssuerRole as Issuer;

/// Schema version written into every stored event envelope.
pub const EVENT_SCHEMA_VERSION: u16 = 1;

/// A resource's spendable state at one instant: the amount, the micro-units of regeneration not
/// yet whole, and the instant regeneration has been accounted up to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Balance {
    pub amount: u64,
    pub regen_carry: u32,
    pub regen_at: Timestamp,
}

/// One thing that happened to a resource.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum ResourceEvent {
    ResourceCreated {
        owner: PlayerId,
        resource_type: String,
        max_amount: u64,
        regen_milli: u64,
        balance: Balance,
        by: PlayerId,
        /// The wallet's name (absent in events recorded before wallets had names).
        #[serde(default)]
        name: Option<String>,
    },
    ResourceAllocated {
        /// How much was consumed.
        amount: u64,
        reason: String,
        /// The balance after regeneration up to now and the consumption.
        balance: Balance,
        by: PlayerId,
    },
    ResourceAdded {
        amount: u64,
        reason: String,
        balance: Balance,
        by: PlayerId,
    },
    ResourceLocked {
        holder: PlayerId,
        reason: String,
        expires_at: Timestamp,
    },
    ResourceUnlocked {
        by: PlayerId,
    },
    /// A lock reached its expiry. Recorded when the server notices (a timer, or the next command).
    ResourceLockExpired {
        expired_at: Timestamp,
    },
}

impl ResourceEvent {
    /// The event's type name as stored and shown in history.
    pub fn type_name(&self) -> &'static str {
        match self {
            ResourceEvent::ResourceCreated { .. } => "ResourceCreated",
            ResourceEvent::ResourceAllocated { .. } => "ResourceAllocated",
            ResourceEvent::ResourceAdded { .. } => "ResourceAdded",
            ResourceEvent::ResourceLocked { .. } => "ResourceLocked",
            ResourceEvent::ResourceUnlocked { .. } => "ResourceUnlocked",
            ResourceEvent::ResourceLockExpired { .. } => "ResourceLockExpired",
        }
    }
}

/// An event as stored: which resource, which version it produced, which command caused it, when.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventEnvelope {
    pub resource_id: ResourceId,
    /// The resource version this event produced (the first event of a resource is version 1).
    pub version: u64,
    pub command_id: CommandId,
    pub at: Timestamp,
    pub schema: u16,
    pub event: ResourceEvent,
    /// The role of the identity that issued the command (the event's `by`, `holder`, or the
    /// server for a lock expiry, names the identity). Absent in events recorded before it was.
    #[serde(default)]
    pub by_role: Option<Role>,
}

impl EventEnvelope {
    /// Who issued this event and as what: the identity the event records and the role recorded
    /// with it; a lock expiry is the server's.
    pub fn issuer(&self) -> (PlayerId, Issuer) {
        let id = match &self.event {
            ResourceEvent::ResourceCreated { by, .. }
            | ResourceEvent::ResourceAllocated { by, .. }
            | ResourceEvent::ResourceAdded { by, .. }
            | ResourceEvent::ResourceUnlocked { by } => by.clone(),
            ResourceEvent::ResourceLocked { holder, .. } => holder.clone(),
            ResourceEvent::ResourceLockExpired { .. } => {
                return (PlayerId::new("server"), Issuer::Server);
            }
        };
        let role = match self.by_role {
            Some(Role::Player) => Issuer::Player,
            Some(Role::Service) => Issuer::Service,
            // Spectators send no commands; an event without a role predates the field.
            Some(Role::Spectator) | None => Issuer::Unknown,
        };
        (id, role)
    }
}
