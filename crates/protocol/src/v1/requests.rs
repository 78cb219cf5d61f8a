//! The requests a client sends, one named struct per message `type` (docs/protocol.md §3). The
//! server turns the five commands into its domain's commands in one place (`net::request`).
//!
//! Every struct refuses unknown fields, and every id must be a UUID string in the canonical form
//! (`super::canonical`). A request that names a resource takes either its `resource_id` or a
//! `wallet` (`{owner, name}`); the wallet is resolved to its id while decoding (`raw`), so what
//! the server handles always carries the id.

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
    /// The wallet's name: the type's own name for a type an owner holds one of (the default),
    /// `<type>:<label>` for one it holds many of. Creating a wallet that exists answers with it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
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
#[serde(try_from = "raw::Allocate")]
pub struct Allocate {
    pub req: RequestId,
    #[serde(deserialize_with = "canonical::command_id")]
    pub command_id: CommandId,
    /// The resource, as sent or resolved from `wallet`.
    pub resource_id: ResourceId,
    pub amount: u64,
    #[serde(default)]
    pub reason: String,
}

/// `add`: add `amount`, up to the resource's maximum.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "raw::Add")]
pub struct Add {
    pub req: RequestId,
    #[serde(deserialize_with = "canonical::command_id")]
    pub command_id: CommandId,
    /// The resource, as sent or resolved from `wallet`.
    pub resource_id: ResourceId,
    pub amount: u64,
    #[serde(default)]
    pub reason: String,
}

/// `lock`: block allocations for `duration_ms`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "raw::Lock")]
pub struct Lock {
    pub req: RequestId,
    #[serde(deserialize_with = "canonical::command_id")]
    pub command_id: CommandId,
    /// The resource, as sent or resolved from `wallet`.
    pub resource_id: ResourceId,
    pub reason: String,
    pub duration_ms: u64,
}

/// `unlock`: release a lock before it expires.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "raw::Unlock")]
pub struct Unlock {
    pub req: RequestId,
    #[serde(deserialize_with = "canonical::command_id")]
    pub command_id: CommandId,
    /// The resource, as sent or resolved from `wallet`.
    pub resource_id: ResourceId,
}

/// `get`: one resource's current view.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "raw::Get")]
pub struct Get {
    pub req: RequestId,
    /// The resource, as sent or resolved from `wallet`.
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
#[serde(try_from = "raw::History")]
pub struct History {
    pub req: RequestId,
    /// The resource, as sent or resolved from `wallet`.
    pub resource_id: ResourceId,
    #[serde(default)]
    pub after_version: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
}

/// `subscribe`: exactly one of `resource_id` (or `wallet`) and `owner`. With `from_version`, first the changes
/// after that version from the log (resume), then live ones.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "raw::Subscribe")]
pub struct Subscribe {
    pub req: RequestId,
    /// The resource, as sent or resolved from `wallet`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
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
#[serde(try_from = "raw::StateAt")]
pub struct StateAt {
    pub req: RequestId,
    /// The resource, as sent or resolved from `wallet`.
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

/// The forms the requests that name a resource are decoded from: `resource_id` or `wallet`,
/// exactly one, resolved into the request's `resource_id`.
mod raw {
    use super::super::RequestId;
    use super::canonical;
    use crate::{CommandId, PlayerId, ResourceId, Timestamp, Wallet};
    use serde::Deserialize;

    /// The resource a request names: its id, or the id of the wallet it names.
    fn target(
        resource_id: Option<ResourceId>,
        wallet: Option<Wallet>,
    ) -> Result<Option<ResourceId>, &'static str> {
        match (resource_id, wallet) {
            (Some(_), Some(_)) => Err("give either `resource_id` or `wallet`, not both"),
            (Some(id), None) => Ok(Some(id)),
            (None, Some(w)) if w.name.is_empty() || w.owner.as_str().is_empty() => {
                Err("`wallet` needs a non-empty `owner` and `name`")
            }
            (None, Some(w)) => Ok(Some(w.id())),
            (None, None) => Ok(None),
        }
    }

    fn required(
        resource_id: Option<ResourceId>,
        wallet: Option<Wallet>,
    ) -> Result<ResourceId, &'static str> {
        target(resource_id, wallet)?.ok_or("missing field `resource_id` (or `wallet`)")
    }

    /// One raw struct per request: its own fields as they are, plus the two ways of naming
    /// the resource; `TryFrom` gives the request with the id resolved.
    macro_rules! raw {
        ($($name:ident { $($field:ident: $ty:ty $(= $attr:meta)?),* })*) => {$(
            #[derive(Deserialize)]
            #[serde(deny_unknown_fields)]
            pub(super) struct $name {
                req: RequestId,
                #[serde(default, deserialize_with = "canonical::some_resource_id")]
                resource_id: Option<ResourceId>,
                #[serde(default)]
                wallet: Option<Wallet>,
                $($(#[$attr])? $field: $ty,)*
            }

            impl TryFrom<$name> for super::$name {
                type Error = &'static str;
                fn try_from(m: $name) -> Result<Self, Self::Error> {
                    Ok(Self {
                        req: m.req,
                        resource_id: required(m.resource_id, m.wallet)?,
                        $($field: m.$field,)*
                    })
                }
            }
        )*};
    }

    raw! {
        Allocate {
            command_id: CommandId = serde(deserialize_with = "canonical::command_id"),
            amount: u64,
            reason: String = serde(default)
        }
        Add {
            command_id: CommandId = serde(deserialize_with = "canonical::command_id"),
            amount: u64,
            reason: String = serde(default)
        }
        Lock {
            command_id: CommandId = serde(deserialize_with = "canonical::command_id"),
            reason: String,
            duration_ms: u64
        }
        Unlock {
            command_id: CommandId = serde(deserialize_with = "canonical::command_id")
        }
        Get {}
        History {
            after_version: u64 = serde(default),
            limit: Option<u32> = serde(default)
        }
        StateAt {
            version: Option<u64> = serde(default),
            at: Option<Timestamp> = serde(default)
        }
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    pub(super) struct Subscribe {
        req: RequestId,
        #[serde(default, deserialize_with = "canonical::some_resource_id")]
        resource_id: Option<ResourceId>,
        #[serde(default)]
        wallet: Option<Wallet>,
        #[serde(default)]
        owner: Option<PlayerId>,
        #[serde(default)]
        from_version: Option<u64>,
    }

    impl TryFrom<Subscribe> for super::Subscribe {
        type Error = &'static str;
        fn try_from(m: Subscribe) -> Result<Self, Self::Error> {
            Ok(Self {
                req: m.req,
                resource_id: target(m.resource_id, m.wallet)?,
                owner: m.owner,
                from_version: m.from_version,
            })
        }
    }
}
