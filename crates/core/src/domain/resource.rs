//! The two schemas: [`ServerResource`] (write model, full detail) and [`ClientResource`] (what a
//! client may see, stored as the read model and pushed to subscribers).

use crate::domain::{Balance, CommandId, PlayerId, ResourceId, Timestamp};
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

/// The client schema.
///
/// Shown to the owner: identity, type, amount and when it was counted, max, regeneration rate, and
/// whether it is locked with the lock's reason and expiry. Never shown: the regeneration carry
/// (server bookkeeping), the lock holder, who created or last changed it, and the command ids
/// (audit fields that would reveal other players' and back-ends' identities).
///
/// The spectator view further drops the lock reason and expiry and the regeneration rate: a
/// watcher sees what a player has, not the reasons behind a lock or the game's economy settings.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientResource {
    pub id: ResourceId,
    pub owner: PlayerId,
    pub resource_type: String,
    pub amount: u64,
    /// The instant `amount` was counted at; with `regen_milli` a client can extrapolate.
    pub amount_at: Timestamp,
    pub max_amount: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub regen_milli: Option<u64>,
    pub locked: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lock_reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lock_expires_at: Option<Timestamp>,
    pub version: u64,
    pub updated_at: Timestamp,
}

impl ClientResource {
    /// The owner's view of a server resource.
    pub fn from_server(r: &ServerResource) -> Self {
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

    /// This view narrowed to what `view` may see.
    pub fn redact(&self, view: Audience) -> Self {
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
