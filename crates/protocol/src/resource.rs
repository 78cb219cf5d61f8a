//! The client schema and the parameters of a new resource: the resource as the wire carries it.

use crate::{PlayerId, ResourceId, Timestamp};
use serde::{Deserialize, Serialize};

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

/// The parameters of a new resource.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourceParams {
    pub initial_amount: u64,
    pub max_amount: u64,
    /// Thousandths of a unit regenerated per second (`500` = 0.5/s).
    #[serde(default)]
    pub regen_milli: u64,
}
