//! The wire protocol, versioned. [`v1`] is the only version today; its types are re-exported
//! here, so `protocol::ClientMessage` is the current version's. A future `v2` would live beside
//! it, and the upgrade's subprotocol (`v1::SUBPROTOCOL`) would pick one per session.
//!
//! Every WebSocket binary frame carries one MessagePack map with named fields ([`encode`],
//! [`decode`]). `docs/protocol.md` is the reference for client authors; these modules and that
//! page change together.

pub mod v1;

pub use v1::*;

use serde::{Deserialize, Serialize};

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
