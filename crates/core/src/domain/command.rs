//! Commands: what a client asks for, in the imperative. The server decides whether it happens.

use crate::domain::{PlayerId, ResourceId, ResourceParams};
use serde::{Deserialize, Serialize};

/// Longest lock: one day. A longer hold is a ban, not a lock.
pub const MAX_LOCK_MS: u64 = 24 * 60 * 60 * 1000;
/// Longest reason accepted on allocate, add and lock.
pub const MAX_REASON_BYTES: usize = 256;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateResource {
    pub resource_type: String,
    /// The wallet's name: the type for a type held once per owner (the default), `<type>:<label>`
    /// for one held many times.
    #[serde(default)]
    pub name: Option<String>,
    /// Another owner than the caller: services only.
    #[serde(default)]
    pub owner: Option<PlayerId>,
    /// Parameters other than the catalogue's: services only.
    #[serde(default)]
    pub params: Option<ResourceParams>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AllocateResource {
    pub resource_id: ResourceId,
    pub amount: u64,
    #[serde(default)]
    pub reason: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddResource {
    pub resource_id: ResourceId,
    pub amount: u64,
    #[serde(default)]
    pub reason: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockResource {
    pub resource_id: ResourceId,
    pub reason: String,
    pub duration_ms: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnlockResource {
    pub resource_id: ResourceId,
}

/// A command on an existing resource, or the creation of a new one. Its kind
/// ([`CommandKind`], derived) names it in metrics and logs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, strum::EnumDiscriminants)]
#[strum_discriminants(
    name(CommandKind),
    derive(strum::VariantArray, strum::IntoStaticStr),
    strum(serialize_all = "snake_case")
)]
pub enum Command {
    Create(CreateResource),
    Allocate(AllocateResource),
    Add(AddResource),
    Lock(LockResource),
    Unlock(UnlockResource),
    /// Internal: record the expiry of a lock whose time has come. Sent by the resource's actor.
    ExpireLock(ResourceId),
}

impl Command {
    /// The resource a command targets: for a create, the wallet it creates (or finds), named
    /// by its owner (the caller unless it names another) and its name (the type unless given).
    pub fn target(&self, caller: &PlayerId) -> ResourceId {
        match self {
            Command::Create(c) => ResourceId::of_wallet(
                c.owner.as_ref().unwrap_or(caller),
                c.name.as_deref().unwrap_or(&c.resource_type),
            ),
            other => other
                .resource_id()
                .expect("every command but create names its resource"),
        }
    }

    /// The resource a command names (`None` for create, whose id follows from its wallet).
    pub fn resource_id(&self) -> Option<ResourceId> {
        match self {
            Command::Create(_) => None,
            Command::Allocate(c) => Some(c.resource_id),
            Command::Add(c) => Some(c.resource_id),
            Command::Lock(c) => Some(c.resource_id),
            Command::Unlock(c) => Some(c.resource_id),
            Command::ExpireLock(id) => Some(*id),
        }
    }
}
