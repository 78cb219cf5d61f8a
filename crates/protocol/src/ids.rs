//! Identifiers, roles and time: the small value types every layer shares.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::sync::Arc;
use uuid::Uuid;

/// A resource's identity: a UUID v7, so ids sort by creation time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ResourceId(pub Uuid);

impl ResourceId {
    /// A fresh time-ordered id.
    pub fn new() -> Self {
        Self(Uuid::now_v7())
    }
}

impl Default for ResourceId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for ResourceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A client-chosen id for one command. A retry of the same command reuses it, so the server can
/// answer the retry with the first outcome instead of applying the command twice.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct CommandId(pub Uuid);

impl CommandId {
    pub fn new() -> Self {
        Self(Uuid::now_v7())
    }
}

impl Default for CommandId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for CommandId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

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

/// Who is asking: the identity and role proven by a token.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Principal {
    pub player: PlayerId,
    pub role: Role,
}

impl Principal {
    pub fn player(id: impl Into<String>) -> Self {
        Self {
            player: PlayerId::new(id),
            role: Role::Player,
        }
    }
    pub fn spectator(id: impl Into<String>) -> Self {
        Self {
            player: PlayerId::new(id),
            role: Role::Spectator,
        }
    }
    pub fn service(id: impl Into<String>) -> Self {
        Self {
            player: PlayerId::new(id),
            role: Role::Service,
        }
    }
    /// The identity the server itself uses for housekeeping (lock expiry).
    pub fn system() -> Self {
        Self::service("system")
    }
    pub fn is_trusted(&self) -> bool {
        self.role == Role::Service
    }
    /// Which view of `owner`'s resources this principal gets: the owner's for the owner and
    /// services, the spectator's for anyone else.
    pub fn audience_for(&self, owner: &PlayerId) -> super::Audience {
        if self.is_trusted() || &self.player == owner {
            super::Audience::Owner
        } else {
            super::Audience::Spectator
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
