//! The two schemas: [`ServerResource`] (write model, full detail) and [`ClientResource`] (what a
//! client may see, stored as the read model and pushed to subscribers).

use crate::domain::{Balance, ClientResource, CommandId, PlayerId, ResourceId, Timestamp, accrue};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

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
    /// The wallet's name, unique per owner; `None` for a resource created before wallets had
    /// names. Last, so snapshots written before it read with `None`. Shared, not copied, by the
    /// states and views cloned on every command.
    #[serde(default)]
    pub name: Option<Arc<str>>,
}

impl ServerResource {
    /// The lock that still holds at `now`, ignoring one that has expired but is not yet recorded.
    pub fn active_lock(&self, now: Timestamp) -> Option<&Lock> {
        self.lock.as_ref().filter(|l| l.expires_at > now)
    }

    /// This state as the rules see it at `now`: regeneration counted up to `now` and a lock
    /// whose time has passed gone. Same version: nothing is recorded by looking.
    pub fn as_of(mut self, now: Timestamp) -> Self {
        self.balance = accrue(self.balance, self.max_amount, self.regen_milli, now);
        if self.active_lock(now).is_none() {
            self.lock = None;
        }
        self
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
    /// This (owner) view as of `now`: what [`ServerResource::as_of`] gives, in the client schema.
    /// Exact when the view knows its regeneration carry; without it (`regen_carry: None`) the
    /// amount may be a unit short, so a reader falls back to the write model.
    fn as_of(&self, now: Timestamp) -> Self;
}

impl ClientSchema for ClientResource {
    fn from_server(r: &ServerResource) -> Self {
        Self {
            id: r.id,
            owner: r.owner.clone(),
            resource_type: r.resource_type.clone(),
            name: r.name.clone(),
            amount: r.balance.amount,
            amount_at: r.balance.regen_at,
            max_amount: r.max_amount,
            regen_milli: Some(r.regen_milli),
            locked: r.lock.is_some(),
            lock_reason: r.lock.as_ref().map(|l| l.reason.clone()),
            lock_expires_at: r.lock.as_ref().map(|l| l.expires_at),
            version: r.version,
            updated_at: r.updated_at,
            regen_carry: Some(r.balance.regen_carry),
        }
    }

    fn as_of(&self, now: Timestamp) -> Self {
        let balance = accrue(
            Balance {
                amount: self.amount,
                regen_carry: self.regen_carry.unwrap_or(0),
                regen_at: self.amount_at,
            },
            self.max_amount,
            // The stored view is the owner's, which has the rate.
            self.regen_milli.unwrap_or(0),
            now,
        );
        let lock_over = self.lock_expires_at.is_some_and(|at| at <= now);
        Self {
            amount: balance.amount,
            amount_at: balance.regen_at,
            regen_carry: Some(balance.regen_carry),
            locked: self.locked && !lock_over,
            lock_reason: if lock_over {
                None
            } else {
                self.lock_reason.clone()
            },
            lock_expires_at: if lock_over {
                None
            } else {
                self.lock_expires_at
            },
            ..self.clone()
        }
    }

    fn redact(&self, view: Audience) -> Self {
        match view {
            Audience::Owner => self.clone(),
            Audience::Spectator => Self {
                regen_milli: None,
                regen_carry: None,
                lock_reason: None,
                lock_expires_at: None,
                ..self.clone()
            },
        }
    }
}
