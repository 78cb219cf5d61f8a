//! What a Warden token says: the claims of the JWT a client presents at the upgrade
//! (docs/protocol.md §1). The server verifies tokens; tools that hold the development secret
//! (client-sim, tests) sign them with these same claims.

use crate::Role;
use serde::{Deserialize, Serialize};

/// The claims of a Warden token.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The player (or service) id.
    pub sub: String,
    pub role: Role,
    /// Expiry, seconds since the Unix epoch.
    pub exp: u64,
    /// Issued at, seconds since the Unix epoch.
    pub iat: u64,
}

impl Claims {
    /// The claims of a token for `player` with `role`, issued now and valid for `ttl_secs`.
    pub fn expiring_in(player: &str, role: Role, ttl_secs: u64) -> Self {
        let iat = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        Self {
            sub: player.to_owned(),
            role,
            exp: iat.saturating_add(ttl_secs),
            iat,
        }
    }
}
