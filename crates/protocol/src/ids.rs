//! Identifiers, roles and time: the small value types the wire carries and every layer shares.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::sync::Arc;
use uuid::Uuid;

/// A UUID newtype: serialized as the UUID's string, fresh ids time-ordered (UUID v7).
macro_rules! uuid_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub Uuid);

        impl $name {
            /// A fresh time-ordered id.
            pub fn new() -> Self {
                Self(Uuid::now_v7())
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }
    };
}

uuid_id!(
    /// A resource's identity: a UUID v5 of its owner and name for a wallet
    /// ([`ResourceId::of_wallet`]); a UUID v7 for a resource created before wallets had names.
    ResourceId
);

impl ResourceId {
    /// The id of `owner`'s wallet `name`: a UUID v5 of the owner and the name in
    /// [`WALLET_NAMESPACE`], so every node (and any client) finds the same wallet by name without
    /// asking, and two creations of one wallet meet at one id (the store keeps one of them).
    pub fn of_wallet(owner: &PlayerId, name: &str) -> Self {
        let mut key = Vec::with_capacity(owner.as_str().len() + 1 + name.len());
        key.extend_from_slice(owner.as_str().as_bytes());
        // Player ids and names hold no zero byte (tokens and names are text), so the pair is
        // read back unambiguously.
        key.push(0);
        key.extend_from_slice(name.as_bytes());
        Self(Uuid::new_v5(&WALLET_NAMESPACE, &key))
    }
}

/// The namespace of wallet ids (see [`ResourceId::of_wallet`]); documented in
/// docs/protocol.md for clients that compute ids themselves.
pub const WALLET_NAMESPACE: Uuid = uuid::uuid!("5f0c4e0a-57a1-4d2e-9b8e-7761726465e1");

uuid_id!(
    /// A client-chosen id for one command. A retry of the same command reuses it, so the server
    /// can answer the retry with the first outcome instead of applying the command twice.
    CommandId
);

/// A player (or service) identity as carried in its token.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PlayerId(Arc<str>);

impl PlayerId {
    pub fn new(id: impl Into<String>) -> Self {
        Self(Arc::from(id.into()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for PlayerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a connected identity may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Acts only on resources it owns, with catalogue parameters.
    Player,
    /// Watches anyone's resources through the spectator view; sends no commands.
    Spectator,
    /// A trusted game back-end or operator: any owner, custom parameters, unlocks any lock.
    Service,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Player => "player",
            Role::Spectator => "spectator",
            Role::Service => "service",
        }
    }
}

impl std::str::FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "player" => Ok(Role::Player),
            "spectator" => Ok(Role::Spectator),
            "service" => Ok(Role::Service),
            other => Err(format!(
                "unknown role {other:?} (expected player, spectator or service)"
            )),
        }
    }
}

/// Milliseconds since the Unix epoch. Rules take it as an argument; they never read a clock.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Timestamp(pub i64);

impl Timestamp {
    pub fn millis(self) -> i64 {
        self.0
    }
    /// `self + ms`, or `None` past the end of time.
    pub fn checked_add_ms(self, ms: u64) -> Option<Timestamp> {
        i64::try_from(ms)
            .ok()
            .and_then(|ms| self.0.checked_add(ms))
            .map(Timestamp)
    }
    /// Milliseconds from `earlier` to `self`; zero if `earlier` is later (a clock that stepped back
    /// never takes regeneration away).
    pub fn ms_since(self, earlier: Timestamp) -> u64 {
        u64::try_from(self.0.saturating_sub(earlier.0)).unwrap_or(0)
    }
}
