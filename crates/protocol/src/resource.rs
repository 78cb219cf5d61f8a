//! The client schema and the parameters of a new resource: the resource as the wire carries it.

use crate::{PlayerId, ResourceId, Timestamp};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

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
    /// The wallet's name, unique per owner (`gold`; `wood:camp-3` for a type an owner holds many
    /// of). Absent for a resource created before wallets had names: it is found by id only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<Arc<str>>,
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
    /// Server bookkeeping, never on the wire: the millionths of a unit regenerated and not yet
    /// whole at `amount_at`. The read model keeps it so a read can count regeneration up to now
    /// with the rules' own arithmetic; `None` where it is not known (a view stored before it was
    /// kept, or one received from the wire).
    #[serde(skip)]
    pub regen_carry: Option<u32>,
}

/// A wallet addressed by name: `owner`'s resource `name`. Every request that takes a
/// `resource_id` takes `wallet` instead (docs/protocol.md §3).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Wallet {
    pub owner: PlayerId,
    pub name: String,
}

impl Wallet {
    pub fn new(owner: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            owner: PlayerId::new(owner),
            name: name.into(),
        }
    }
    /// The wallet's resource id (the same on every node and in every client).
    pub fn id(&self) -> ResourceId {
        ResourceId::of_wallet(&self.owner, &self.name)
    }
}

impl From<&Wallet> for ResourceId {
    fn from(w: &Wallet) -> Self {
        w.id()
    }
}

impl From<Wallet> for ResourceId {
    fn from(w: Wallet) -> Self {
        w.id()
    }
}

/// The parameters of a new resource.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourceParams {
    pub initial_amount: u64,
    pub max_amount: u64,
    /// Thousandths of a unit regenerated per second (`500` = 0.5/s).
    #[serde(default)]
    pub regen_milli: u64,
}
