//! The two schemas: [`ServerResource`] (write model, full detail) and [`ClientResource`] (what a
//! client may see, stored as the read model and pushed to subscribers).

use crate::domain::{Balance, ClientResource, CommandId, PlayerId, ResourceId, Timestamp};
use serde::{Deserialize, Serialize};

/// A lock on a resource: while it holds, nothing can be allocated (spent) from it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lock {
    /// Who took the lock; only it (or a service) may unlock before expiry.
    pub holder: PlayerId,
    pub reason: String,
    /// The lock ends by itself at this instant.
    pub expires_at: Timestamp,
}

/// The write model: everything the rules need, including bookkeeping a client never sees.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerResource {
    pub id: ResourceId,
    pub owner: PlayerId,
    pub resource_type: String,
    /// Spendable amount as of `balance.regen_at` (regeneration after that is not yet counted).
    pub balance: Balance,
    pub max_amount: u64,
    /// Regeneration in thousandths of a unit per second.
    pub regen_milli: u64,
    pub lock: Option<Lock>,
    /// Number of events applied; the next event is `version + 1`.
    pub version: u64,
    pub created_at: Timestamp,
    pub created_by: PlayerId,
    pub updated_at: Timestamp,
    pub updated_by: PlayerId,
    /// The command that produced the latest event (audit).
    pub last_command: CommandId,
}

impl ServerResource {
    /// The lock that still holds at `now`, ignoring one that has expired but is not yet recorded.
    pub fn active_lock(&self, now: Timestamp) -> Option<&Lock> {
        self.lock.as_ref().filter(|l| l.expires_at > now)
    }
}

/// Which audience a [`ClientResource`] is shaped for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Audience {
    /// The owner (or a service): everything in the client schema.
    Owner,
    /// Anyone watching: amounts and whether it is locked, not why or by whom, nor its regeneration.
    Spectator,
}

impl Audience {
    /// What this audience sees of `state`: the one place the domain shapes a client view.
    pub fn view_of(self, state: &ServerResource) -> ClientResource {
        ClientResource::from_server(state).redact(self)
    }
}

/// How the domain builds the client schema ([`ClientResource`], a wire type) from the server
/// schema, and narrows it for an audience: the one place that decides what a client may see.
pub trait ClientSchema: Sized {
    /// The owner's view of a server resource.
    fn from_server(r: &ServerResource) -> Self;
    /// This view narrowed to what `view` may see.
    fn redact(&self, view: Audience) -> Self;
}

impl ClientSchema for ClientResource {
    fn from_server(r: &ServerResource) -> Self {
        Self {
            id: r.id,
            owner: r.owner.clone(),
            resource_type: r.resource_type.clone(),
            amount: r.balance.amount,
            amount_at: r.balance.regen_at,
            max_amount: r.max_amount,
            regen_milli: Some(r.regen_milli),
            locked: r.lock.is_some(),
            lock_reason: r.lock.as_ref().map(|l| l.reason.clone()),
            lock_expires_at: r.lock.as_ref().map(|l| l.expires_at),
            version: r.version,
            updated_at: r.updated_at,
        }
    }

    fn redact(&self, view: Audience) -> Self {
        match view {
            Audience::Owner => self.clone(),
            Audience::Spectator => Self {
                regen_milli: None,
                lock_reason: None,
                lock_expires_at: None,
                ..self.clone()
            },
        }
    }
}
