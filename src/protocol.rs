//! Wire types of protocol version 1, shared by the server and `client-sim`.
//!
//! Every WebSocket binary frame carries one MessagePack map with named fields; the field `type`
//! names the message. UUIDs travel as strings (`"0190c3e2-…"`), times as integer milliseconds
//! since the Unix epoch, amounts and versions as unsigned integers. `docs/protocol.md` is the
//! reference for client authors; this file and that page change together.

use crate::domain::{
    ClientResource, CommandId, PlayerId, ResourceId, ResourceParams, Role, Timestamp,
};
use serde::{Deserialize, Serialize};

/// The protocol version this server speaks.
pub const PROTOCOL_VERSION: u32 = 1;

/// A client's request id; the reply to a request carries it back in `req`.
pub type RequestId = u64;

/// Messages a client sends.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ClientMessage {
    Create {
        req: RequestId,
        #[serde(deserialize_with = "canonical::command_id")]
        command_id: CommandId,
        resource_type: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        owner: Option<PlayerId>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        params: Option<ResourceParams>,
    },
    Allocate {
        req: RequestId,
        #[serde(deserialize_with = "canonical::command_id")]
        command_id: CommandId,
        #[serde(deserialize_with = "canonical::resource_id")]
        resource_id: ResourceId,
        amount: u64,
        #[serde(default)]
        reason: String,
    },
    Add {
        req: RequestId,
        #[serde(deserialize_with = "canonical::command_id")]
        command_id: CommandId,
        #[serde(deserialize_with = "canonical::resource_id")]
        resource_id: ResourceId,
        amount: u64,
        #[serde(default)]
        reason: String,
    },
    Lock {
        req: RequestId,
        #[serde(deserialize_with = "canonical::command_id")]
        command_id: CommandId,
        #[serde(deserialize_with = "canonical::resource_id")]
        resource_id: ResourceId,
        reason: String,
        duration_ms: u64,
    },
    Unlock {
        req: RequestId,
        #[serde(deserialize_with = "canonical::command_id")]
        command_id: CommandId,
        #[serde(deserialize_with = "canonical::resource_id")]
        resource_id: ResourceId,
    },
    Get {
        req: RequestId,
        #[serde(deserialize_with = "canonical::resource_id")]
        resource_id: ResourceId,
    },
    /// The resources of `owner` (default: the caller).
    List {
        req: RequestId,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        owner: Option<PlayerId>,
    },
    /// Events after `after_version` (default 0), at most `limit` (default and cap: 1000).
    History {
        req: RequestId,
        #[serde(deserialize_with = "canonical::resource_id")]
        resource_id: ResourceId,
        #[serde(default)]
        after_version: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        limit: Option<u32>,
    },
    /// Exactly one of `resource_id` and `owner`. With `from_version`, first receive the changes
    /// after that version from the log (resume), then live ones.
    Subscribe {
        req: RequestId,
        #[serde(
            default,
            skip_serializing_if = "Option::is_none",
            deserialize_with = "canonical::some_resource_id"
        )]
        resource_id: Option<ResourceId>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        owner: Option<PlayerId>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        from_version: Option<u64>,
    },
    Unsubscribe {
        req: RequestId,
        sub: u64,
    },
    /// The resource's state right after event `version`, or as it stood at instant `at`
    /// (exactly one of the two), rebuilt from its log.
    StateAt {
        req: RequestId,
        resource_id: ResourceId,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        version: Option<u64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        at: Option<Timestamp>,
    },
    Ping {
        req: RequestId,
    },
}

impl ClientMessage {
    /// Every message type a client may send, as its `type` field spells it, in the order of
    /// [`type_index`](Self::type_index). The one list of them: the session's `unknown_type`
    /// check, the metrics and the fuzzer read it.
    pub const TYPES: [&'static str; 12] = [
        "create",
        "allocate",
        "add",
        "lock",
        "unlock",
        "get",
        "list",
        "history",
        "subscribe",
        "unsubscribe",
        "ping",
        "state_at",
    ];

    /// This message's position in [`TYPES`](Self::TYPES).
    pub fn type_index(&self) -> usize {
        match self {
            ClientMessage::Create { .. } => 0,
            ClientMessage::Allocate { .. } => 1,
            ClientMessage::Add { .. } => 2,
            ClientMessage::Lock { .. } => 3,
            ClientMessage::Unlock { .. } => 4,
            ClientMessage::Get { .. } => 5,
            ClientMessage::List { .. } => 6,
            ClientMessage::History { .. } => 7,
            ClientMessage::Subscribe { .. } => 8,
            ClientMessage::Unsubscribe { .. } => 9,
            ClientMessage::Ping { .. } => 10,
            ClientMessage::StateAt { .. } => 11,
        }
    }

    /// This message's `type`, as on the wire.
    pub fn type_name(&self) -> &'static str {
        Self::TYPES[self.type_index()]
    }

    pub fn req(&self) -> RequestId {
        match self {
            ClientMessage::Create { req, .. }
            | ClientMessage::Allocate { req, .. }
            | ClientMessage::Add { req, .. }
            | ClientMessage::Lock { req, .. }
            | ClientMessage::Unlock { req, .. }
            | ClientMessage::Get { req, .. }
            | ClientMessage::List { req, .. }
            | ClientMessage::History { req, .. }
            | ClientMessage::Subscribe { req, .. }
            | ClientMessage::Unsubscribe { req, .. }
            | ClientMessage::StateAt { req, .. }
            | ClientMessage::Ping { req } => *req,
        }
    }
}

/// The one form of a UUID a client may send: a string of 36 characters, lower-case hex with
/// hyphens (`01936f4e-8a1b-7c3d-9e2f-0123456789ab`). Upper case, no hyphens, braces, `urn:uuid:`
/// and the 16-byte binary form are refused, so every id has one spelling on the wire (and in
/// logs, history and command records).
mod canonical {
    use crate::domain::{CommandId, ResourceId};
    use serde::de::{Deserializer, Error};
    use uuid::Uuid;

    pub fn parse(s: &str) -> Option<Uuid> {
        let b = s.as_bytes();
        let shaped = b.len() == 36
            && b.iter().enumerate().all(|(i, c)| match i {
                8 | 13 | 18 | 23 => *c == b'-',
                _ => matches!(c, b'0'..=b'9' | b'a'..=b'f'),
            });
        if shaped {
            Uuid::parse_str(s).ok()
        } else {
            None
        }
    }

    /// Accepts a MessagePack string only (not binary, even if it holds text).
    struct CanonicalUuid;

    impl serde::de::Visitor<'_> for CanonicalUuid {
        type Value = Uuid;

        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str(
                "a UUID string in the canonical form (36 characters, lower-case hex, hyphenated)",
            )
        }

        fn visit_str<E: Error>(self, s: &str) -> Result<Uuid, E> {
            parse(s).ok_or_else(|| {
                E::custom(format!(
                    "{s:?} is not a UUID in the canonical form (36 characters, lower-case hex, hyphenated)"
                ))
            })
        }
    }

    fn uuid<'de, D: Deserializer<'de>>(d: D) -> Result<Uuid, D::Error> {
        d.deserialize_str(CanonicalUuid)
    }

    pub fn command_id<'de, D: Deserializer<'de>>(d: D) -> Result<CommandId, D::Error> {
        uuid(d).map(CommandId)
    }

    pub fn resource_id<'de, D: Deserializer<'de>>(d: D) -> Result<ResourceId, D::Error> {
        uuid(d).map(ResourceId)
    }

    /// An optional one (`nil` or absent is `None`).
    pub fn some_resource_id<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<ResourceId>, D::Error> {
        struct Maybe;
        impl<'de> serde::de::Visitor<'de> for Maybe {
            type Value = Option<ResourceId>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a UUID string or nil")
            }
            fn visit_none<E: Error>(self) -> Result<Self::Value, E> {
                Ok(None)
            }
            fn visit_unit<E: Error>(self) -> Result<Self::Value, E> {
                Ok(None)
            }
            fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
                resource_id(d).map(Some)
            }
        }
        d.deserialize_option(Maybe)
    }
}

/// Limits the server enforces, announced in `welcome`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    pub max_frame_bytes: u32,
    pub commands_per_second: u32,
    pub max_subscriptions: u32,
    pub idle_timeout_ms: u64,
    pub outbound_queue: u32,
    /// Commands a session may send in one burst before `commands_per_second` applies.
    #[serde(default)]
    pub commands_burst: u32,
    /// Requests of one session processed at once; beyond it the server stops reading.
    #[serde(default)]
    pub max_in_flight: u32,
    /// How often the server sends a WebSocket ping.
    #[serde(default)]
    pub ping_interval_ms: u64,
}

/// One event of the audit trail as a client sees it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HistoryEvent {
    pub version: u64,
    /// `ResourceCreated`, `ResourceAllocated`, …
    pub event_type: String,
    pub at: Timestamp,
    pub command_id: CommandId,
    /// The amount requested by an allocate or add.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amount: Option<u64>,
    /// The amount after the event, where it changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub balance: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Messages the server sends.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMessage {
    /// First message on every connection.
    Welcome {
        protocol: u32,
        player: PlayerId,
        role: Role,
        server_time: Timestamp,
        limits: Limits,
    },
    /// A command succeeded (or, with `duplicate`, had already succeeded with this command id).
    Applied {
        req: RequestId,
        command_id: CommandId,
        resource_id: ResourceId,
        version: u64,
        resource: ClientResource,
        duplicate: bool,
    },
    Resource {
        req: RequestId,
        resource: ClientResource,
    },
    Resources {
        req: RequestId,
        resources: Vec<ClientResource>,
    },
    History {
        req: RequestId,
        resource_id: ResourceId,
        events: Vec<HistoryEvent>,
    },
    /// A subscription is live; `resources` is the current view of each resource it covers.
    Subscribed {
        req: RequestId,
        sub: u64,
        resources: Vec<ClientResource>,
    },
    Unsubscribed {
        req: RequestId,
        sub: u64,
    },
    /// One committed command on a subscribed resource: versions `base_version + 1 ..= version`,
    /// and the view after them. Per resource, updates arrive in version order with no gap
    /// (`base_version` equals the previous update's `version`) and no repeat. `sub` names the
    /// subscription it belongs to (kept first: the server writes it into a shared encoding).
    Update {
        sub: u64,
        resource_id: ResourceId,
        base_version: u64,
        version: u64,
        resource: ClientResource,
    },
    /// Reply to `state_at`: the view of the resource at that point; `version` is the last event
    /// folded in.
    State {
        req: RequestId,
        resource_id: ResourceId,
        version: u64,
        resource: ClientResource,
    },
    Pong {
        req: RequestId,
        server_time: Timestamp,
    },
    /// A request failed (`req` set), or the session is about to close (`req` absent).
    Error {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        req: Option<RequestId>,
        code: String,
        message: String,
    },
}

impl ServerMessage {
    /// The `req` of the request this message answers; `None` for `welcome`, `update` and an
    /// `error` about a message whose `req` could not be read.
    pub fn req(&self) -> Option<RequestId> {
        match self {
            ServerMessage::Applied { req, .. }
            | ServerMessage::Resource { req, .. }
            | ServerMessage::Resources { req, .. }
            | ServerMessage::History { req, .. }
            | ServerMessage::Subscribed { req, .. }
            | ServerMessage::Unsubscribed { req, .. }
            | ServerMessage::State { req, .. }
            | ServerMessage::Pong { req, .. } => Some(*req),
            ServerMessage::Error { req, .. } => *req,
            ServerMessage::Welcome { .. } | ServerMessage::Update { .. } => None,
        }
    }
}

/// Encodes a message as a MessagePack map with named fields (UUIDs as strings).
pub fn encode<T: Serialize>(msg: &T) -> Vec<u8> {
    let mut buf = Vec::with_capacity(128);
    let mut ser = rmp_serde::Serializer::new(&mut buf)
        .with_struct_map()
        .with_human_readable();
    msg.serialize(&mut ser)
        .expect("protocol messages always encode");
    buf
}

/// Decodes a message encoded by [`encode`] (or any client following docs/protocol.md).
pub fn decode<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> Result<T, rmp_serde::decode::Error> {
    let mut de = rmp_serde::Deserializer::from_read_ref(bytes).with_human_readable();
    T::deserialize(&mut de)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_list_of_types_names_exactly_the_variants_in_index_order() {
        // Each listed name is a variant (a bare `{"type": name}` fails on a missing field, not on
        // an unknown variant) ...
        for name in ClientMessage::TYPES {
            let err = serde_json::from_str::<ClientMessage>(&format!(r#"{{"type":"{name}"}}"#))
                .expect_err("fields are missing");
            assert!(
                !err.to_string().contains("unknown variant"),
                "{name}: {err}"
            );
        }
        // ... and a message's name is the `type` it is sent with.
        let ping = ClientMessage::Ping { req: 1 };
        let json = serde_json::to_value(&ping).unwrap();
        assert_eq!(json["type"], ping.type_name());
        let names: std::collections::HashSet<_> = ClientMessage::TYPES.iter().collect();
        assert_eq!(names.len(), ClientMessage::TYPES.len(), "no name twice");
    }

    #[test]
    fn messages_round_trip_with_string_uuids_and_named_fields() {
        let msg = ClientMessage::Allocate {
            req: 7,
            command_id: CommandId::new(),
            resource_id: ResourceId::new(),
            amount: 200,
            reason: "Purchase item".into(),
        };
        let bytes = encode(&msg);
        assert_eq!(decode::<ClientMessage>(&bytes).unwrap(), msg);
        let as_value: rmpv::Value = rmp_serde::from_slice(&bytes).unwrap();
        let map = as_value.as_map().expect("a map");
        let field = |k: &str| {
            map.iter()
                .find(|(key, _)| key.as_str() == Some(k))
                .map(|(_, v)| v)
        };
        assert_eq!(field("type").and_then(|v| v.as_str()), Some("allocate"));
        assert!(
            field("resource_id").unwrap().is_str(),
            "UUIDs travel as strings"
        );
    }
}
