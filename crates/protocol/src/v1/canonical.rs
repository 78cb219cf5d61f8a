//! The one form of a UUID a client may send: a string of 36 characters, lower-case hex with
//! hyphens (`01936f4e-8a1b-7c3d-9e2f-0123456789ab`). Upper case, no hyphens, braces, `urn:uuid:`
//! and the 16-byte binary form are refused, so every id has one spelling on the wire (and in
//! logs, history and command records). Also `params`, which must be a map (or array), not a
//! MessagePack binary.

use crate::{CommandId, ResourceId, ResourceParams};
use serde::Deserialize;
use serde::de::value::{MapAccessDeserializer, SeqAccessDeserializer};
use serde::de::{Deserializer, Error, MapAccess, SeqAccess, Visitor};
use uuid::Uuid;

pub(super) fn parse(s: &str) -> Option<Uuid> {
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

pub(super) fn command_id<'de, D: Deserializer<'de>>(d: D) -> Result<CommandId, D::Error> {
    uuid(d).map(CommandId)
}

pub(super) fn resource_id<'de, D: Deserializer<'de>>(d: D) -> Result<ResourceId, D::Error> {
    uuid(d).map(ResourceId)
}

/// An optional one (`nil` or absent is `None`).
pub(super) fn some_resource_id<'de, D: Deserializer<'de>>(
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

/// `params` as every decode path reads it: a map (or, as serde allows for any struct, its fields
/// in order in an array), or nil. Not a MessagePack binary: decoded in place, a struct would take
/// a binary's bytes as its fields in order.
pub(super) fn params<'de, D: Deserializer<'de>>(d: D) -> Result<Option<ResourceParams>, D::Error> {
    struct Params;

    impl<'de> Visitor<'de> for Params {
        type Value = Option<ResourceParams>;

        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a map of resource parameters")
        }

        fn visit_unit<E: Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }

        fn visit_none<E: Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }

        fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
            ResourceParams::deserialize(MapAccessDeserializer::new(map)).map(Some)
        }

        fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
            ResourceParams::deserialize(SeqAccessDeserializer::new(seq)).map(Some)
        }
    }

    d.deserialize_any(Params)
}
