//! Protocol version 1: the messages, their fields, the error codes and the subprotocol name.
//!
//! Every WebSocket binary frame carries one MessagePack map with named fields; the field `type`
//! names the message. UUIDs travel as strings (`"0190c3e2-…"`), times as integer milliseconds
//! since the Unix epoch, amounts and versions as unsigned integers. `docs/protocol.md` is the
//! reference for client authors; this module and that page change together.

mod canonical;
mod error;
mod requests;

pub use error::ErrorCode;
pub use requests::{
    Add, Allocate, Create, Get, History, List, Lock, Ping, StateAt, Subscribe, Unlock, Unsubscribe,
};

use crate::{ClientResource, CommandId, PlayerId, ResourceId, Role, Timestamp};
use serde::{Deserialize, Serialize};

/// The protocol version this server speaks.
pub const PROTOCOL_VERSION: u32 = 1;

/// The WebSocket subprotocol name of this version (optional for clients to offer).
pub const SUBPROTOCOL: &str = "warden.v1";

/// A client's request id; the reply to a request carries it back in `req`.
pub type RequestId = u64;

/// Messages a client sends: one named request struct per `type`.
#[derive(
    Clone, Debug, PartialEq, Serialize, Deserialize, strum::VariantNames, strum::EnumDiscriminants,
)]
#[serde(tag = "type", rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
#[strum_discriminants(
    name(ClientMessageType),
    derive(strum::VariantArray, strum::IntoStaticStr)
)]
#[strum_discriminants(strum(serialize_all = "snake_case"))]
pub enum ClientMessage {
    Create(Create),
    Allocate(Allocate),
    Add(Add),
    Lock(Lock),
    Unlock(Unlock),
    Get(Get),
    List(List),
    History(History),
    Subscribe(Subscribe),
    Unsubscribe(Unsubscribe),
    StateAt(StateAt),
    Ping(Ping),
}

impl ClientMessage {
    /// Every message type a client may send, as its `type` field spells it, in declaration
    /// order (derived from the enum): the session's `unknown_type` check, the metrics and the
    /// fuzzer read it.
    pub const TYPES: &'static [&'static str] = <Self as strum::VariantNames>::VARIANTS;

    /// This message's position in [`TYPES`](Self::TYPES).
    pub fn type_index(&self) -> usize {
        ClientMessageType::from(self) as usize
    }

    /// This message's `type`, as on the wire.
    pub fn type_name(&self) -> &'static str {
        ClientMessageType::from(self).into()
    }

    pub fn req(&self) -> RequestId {
        match self {
            ClientMessage::Create(m) => m.req,
            ClientMessage::Allocate(m) => m.req,
            ClientMessage::Add(m) => m.req,
            ClientMessage::Lock(m) => m.req,
            ClientMessage::Unlock(m) => m.req,
            ClientMessage::Get(m) => m.req,
            ClientMessage::List(m) => m.req,
            ClientMessage::History(m) => m.req,
            ClientMessage::Subscribe(m) => m.req,
            ClientMessage::Unsubscribe(m) => m.req,
            ClientMessage::StateAt(m) => m.req,
            ClientMessage::Ping(m) => m.req,
        }
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
    /// Who issued it: a player's or a service's id, or `server` (a lock expiry).
    pub by: PlayerId,
    pub by_role: IssuerRole,
}

/// What kind of identity issued an event.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IssuerRole {
    Player,
    Service,
    /// The server itself (a lock reaching its expiry).
    Server,
    /// Recorded before events said which kind of identity issued them.
    Unknown,
}

/// Messages the server sends.
#[derive(
    Clone, Debug, PartialEq, Serialize, Deserialize, strum::VariantNames, strum::EnumDiscriminants,
)]
#[serde(tag = "type", rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
#[strum_discriminants(name(ServerMessageType))]
pub enum ServerMessage {
    /// First message on every connection.
    Welcome {
        protocol: u32,
        player: PlayerId,
        role: Role,
        server_time: Timestamp,
        limits: Limits,
    },
    /// A command succeeded (or, with `duplicate`, had already succeeded with this command id; or,
    /// with `existing`, was a `create` of a wallet that exists).
    Applied {
        req: RequestId,
        command_id: CommandId,
        resource_id: ResourceId,
        version: u64,
        resource: ClientResource,
        duplicate: bool,
        /// A `create` found the wallet it names already there and recorded nothing: `resource`
        /// is that wallet as it is (absent when false).
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        existing: bool,
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
        /// Who issued event `version` (for the owner and services; absent for anyone else).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        by: Option<PlayerId>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        by_role: Option<IssuerRole>,
    },
    Pong {
        req: RequestId,
        server_time: Timestamp,
    },
    /// A request failed (`req` set), or the session is about to close (`req` absent).
    Error {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        req: Option<RequestId>,
        code: ErrorCode,
        message: String,
    },
}

impl ServerMessage {
    /// Every message type the server sends, as its `type` field spells it, in declaration order.
    pub const TYPES: &'static [&'static str] = <Self as strum::VariantNames>::VARIANTS;

    /// This message's position in [`TYPES`](Self::TYPES).
    pub fn type_index(&self) -> usize {
        ServerMessageType::from(self) as usize
    }

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

#[cfg(test)]
mod tests {
    use super::*;

    use crate::{decode, encode};

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
        let ping = ClientMessage::Ping(Ping { req: 1 });
        let json = serde_json::to_value(&ping).unwrap();
        assert_eq!(json["type"], ping.type_name());
        let names: std::collections::HashSet<_> = ClientMessage::TYPES.iter().collect();
        assert_eq!(names.len(), ClientMessage::TYPES.len(), "no name twice");
    }

    #[test]
    fn a_request_refuses_unknown_fields_and_names_its_type() {
        let with = |extra: &str| {
            serde_json::from_str::<ClientMessage>(&format!(r#"{{"type":"ping","req":3{extra}}}"#))
        };
        assert_eq!(with("").unwrap(), ClientMessage::Ping(Ping { req: 3 }));
        let err = with(r#","speed":9"#).expect_err("unknown field");
        assert!(err.to_string().contains("speed"), "{err}");
        let pong = ServerMessage::Pong {
            req: 1,
            server_time: Timestamp(0),
        };
        let json = serde_json::to_value(&pong).unwrap();
        assert_eq!(json["type"], ServerMessage::TYPES[pong.type_index()]);
    }

    #[test]
    fn messages_round_trip_with_string_uuids_and_named_fields() {
        let msg = ClientMessage::Allocate(Allocate {
            req: 7,
            command_id: CommandId::new(),
            resource_id: ResourceId::new(),
            amount: 200,
            reason: "Purchase item".into(),
        });
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
