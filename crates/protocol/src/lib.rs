//! The Warden wire protocol: every message a client and the server exchange, the vocabulary
//! they carry (ids, time, roles, the client schema), the error and close codes, the
//! subprotocol, the claims of a token, and the seed scenario as data. It depends on no server
//! code: a client (`warden-client`, client-sim, a game) builds on this crate alone.
//!
//! Layout:
//! - [`v1`]: protocol version 1, the only one today; its types are re-exported here, so
//!   `ClientMessage` is the current version's. A future `v2` would live beside it, and the
//!   upgrade's subprotocol would pick one per session.
//! - `ids` and `resource`: [`ResourceId`], [`CommandId`], [`PlayerId`], [`Role`],
//!   [`Timestamp`], [`ClientResource`] and [`ResourceParams`]: the server's rules use these very
//!   types, so a change to the wire is a change to this crate, never a side effect of one to the
//!   rules.
//! - [`CloseCode`]: the WebSocket close codes a session ends with.
//! - [`token`]: the claims a token carries.
//! - [`seed`]: the seed scenario's steps.
//! - [`js`]: the error and close codes as a JavaScript module (`clients/js/src/codes.js`).
//!
//! Every WebSocket binary frame carries one MessagePack map with named fields ([`encode`],
//! [`decode`]). `docs/protocol.md` is the reference for client authors; these modules and that
//! page change together.

mod close;
mod ids;
pub mod js;
mod resource;
pub mod seed;
pub mod token;
pub mod v1;

pub use close::CloseCode;
pub use ids::{CommandId, PlayerId, ResourceId, Role, Timestamp, WALLET_NAMESPACE};
pub use resource::{ClientResource, ResourceParams, Wallet};
pub use v1::*;

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};
use std::fmt;
use std::marker::PhantomData;

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

/// Decodes a message map into `T`, the struct of one message type, skipping the map's `type`
/// entry wherever it is; every other key goes to `T`, which may refuse unknown fields as usual.
///
/// For a caller that already read the `type` (the session does, in `net::inbound::inspect`):
/// serde's derive for an internally tagged enum such as [`ClientMessage`] first copies the whole
/// map into a buffer of its own to find the tag, every key and string allocated, then decodes
/// the variant from that copy.
pub fn decode_untagged<'a, T: Deserialize<'a>>(
    bytes: &'a [u8],
) -> Result<T, rmp_serde::decode::Error> {
    let mut de = rmp_serde::Deserializer::from_read_ref(bytes).with_human_readable();
    (&mut de).deserialize_map(Untagged(PhantomData))
}

/// Visits the outer map and hands it, minus `type`, to `T`.
struct Untagged<T>(PhantomData<T>);

impl<'de, T: Deserialize<'de>> Visitor<'de> for Untagged<T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a message map")
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
        T::deserialize(de::value::MapAccessDeserializer::new(SkipType(map)))
    }
}

/// A map without its `type` entries. Keys are read as strings (the session checked that every key
/// is one) and given to the struct's field visitor from there.
struct SkipType<A>(A);

impl<'de, A: MapAccess<'de>> MapAccess<'de> for SkipType<A> {
    type Error = A::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, A::Error> {
        loop {
            match self.0.next_key::<&'de str>()? {
                None => return Ok(None),
                Some("type") => {
                    self.0.next_value::<IgnoredAny>()?;
                }
                Some(key) => {
                    return seed
                        .deserialize(de::value::BorrowedStrDeserializer::new(key))
                        .map(Some);
                }
            }
        }
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, A::Error> {
        self.0.next_value_seed(seed)
    }

    fn size_hint(&self) -> Option<usize> {
        self.0.size_hint()
    }
}
