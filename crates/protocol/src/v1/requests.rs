//! The requests a client sends, one named struct per message `type` (docs/protocol.md §3). The
//! server turns the five commands into its domain's commands in one place (`net::request`).
//!
//! Every struct refuses unknown fields, and every id must be a UUID string in the canonical form
//! (`super::canonical`).

use super::RequestId;
use super::canonical;
use crate::{CommandId, PlayerId, ResourceId, ResourceParams, Timestamp};
use serde::{Deserialize, Serialize};

/// `create`: a new resource of a type from the server's catalogue.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Create {
    pub req: RequestId,
    #[serde(deserialize_with = "canonical::command_id")]
    pub command_id: CommandId,
    pub resource_type: String,
    /// Another owner than the caller (services only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<PlayerId>,
    /// The catalogue's parameters overridden (services only).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "canonical::params"
    )]
    pub params: Option<ResourceParams>,
}

/// `allocate`: spend `amount` now.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Allocate {
    pub req: RequestId,
    #[serde(deserialize_with = "canonical::command_id")]
    pub command_id: CommandId,
    #[serde(deserialize_with = "canonical::resource_id")]
    pub resource_id: ResourceId,
    pub amount: u64,
    #[serde(default)]
    pub reason: String,
}

/// `add`: add `amount`, up to the resource's maximum.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Add {
    pub req: RequestId,
    #[serde(deserialize_with = "canonical::command_id")]
    pub command_id: CommandId,
    #[serde(deserialize_with = "canonical::resource_id")]
    pub resource_id: ResourceId,
    pub amount: u64,
    #[serde(default)]
    pub reason: String,
}

/// `lock`: block allocations for `duration_ms`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Lock {
    pub req: RequestId,
    #[serde(deserialize_with = "canonical::command_id")]
    pub command_id: CommandId,
    #[serde(deserialize_with = "canonical::resource_id")]
    pub resource_id: ResourceId,
    pub reason: String,
    pub duration_ms: u64,
}

/// `unlock`: release a lock before it expires.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Unlock {
    pub req: RequestId,
    #[serde(deserialize_with = "canonical::command_id")]
    pub command_id: CommandId,
    #[serde(deserialize_with = "canonical::resource_id")]
    pub resource_id: ResourceId,
}

/// `get`: one resource's current view.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Get {
    pub req: RequestId,
    #[serde(deserialize_with = "canonical::resource_id")]
    pub resource_id: ResourceId,
}

/// `list`: the resources of `owner` (default: the caller).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct List {
    pub req: RequestId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<PlayerId>,
}

/// `history`: events after `after_version` (default 0), at most `limit` (default and cap: 1000).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct History {
    pub req: RequestId,
    #[serde(deserialize_with = "canonical::resource_id")]
    pub resource_id: ResourceId,
    #[serde(default)]
    pub after_version: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
}

/// `subscribe`: exactly one of `resource_id` and `owner`. With `from_version`, first the changes
/// after that version from the log (resume), then live ones.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Subscribe {
    pub req: RequestId,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "canonical::some_resource_id"
    )]
    pub resource_id: Option<ResourceId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<PlayerId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_version: Option<u64>,
}

/// `unsubscribe`: stop subscription `sub`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Unsubscribe {
    pub req: RequestId,
    pub sub: u64,
}

/// `state_at`: the resource's state right after event `version`, or as it stood at instant `at`
/// (exactly one of the two), rebuilt from its log.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StateAt {
    pub req: RequestId,
    #[serde(deserialize_with = "canonical::resource_id")]
    pub resource_id: ResourceId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<Timestamp>,
}

/// `ping`: answered with `pong` and the server's clock.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ping {
    pub req: RequestId,
}
