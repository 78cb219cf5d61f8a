//! Who is asking, and which view of a resource that gives them.

use super::{Audience, PlayerId, Role};
use serde::{Deserialize, Serialize};

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
    pub fn audience_for(&self, owner: &PlayerId) -> Audience {
        if self.is_trusted() || &self.player == owner {
            Audience::Owner
        } else {
            Audience::Spectator
        }
    }
}
