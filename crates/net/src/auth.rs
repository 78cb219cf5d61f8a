//! Identity: signed tokens (JWT, HS256) carrying player id, role and expiry, and the server
//! secret that signs them.
//!
//! The secret is `WARDEN_SECRET` when set; otherwise a development secret is created once in the
//! data directory (`<data-dir>/dev-secret`, mode 0600) and reused, so `warden token` and a running
//! server on the same data directory agree without any set-up.

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use std::path::Path;
use thiserror::Error;
use warden_core::domain::{PlayerId, Principal, Role};
use warden_protocol::token::Claims;

/// File name of the development secret inside the data directory.
pub const DEV_SECRET_FILE: &str = "dev-secret";
/// Environment variable holding the production secret.
pub const SECRET_ENV: &str = "WARDEN_SECRET";

#[derive(Debug, Error)]
pub enum AuthError {
    #[error("no token")]
    Missing,
    #[error("token expired")]
    Expired,
    #[error("invalid token: {0}")]
    Invalid(String),
    #[error("cannot read or create the secret at {path}: {source}")]
    Secret {
        path: String,
        source: std::io::Error,
    },
}

/// Signs and verifies tokens with one secret.
#[derive(Clone)]
pub struct TokenKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
}

impl std::fmt::Debug for TokenKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenKeys(..)")
    }
}

impl TokenKeys {
    pub fn from_secret(secret: &[u8]) -> Self {
        Self {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
        }
    }

    /// `WARDEN_SECRET` if set, else the data directory's development secret (created if absent).
    pub fn load(data_dir: &Path) -> Result<Self, AuthError> {
        match std::env::var(SECRET_ENV) {
            Ok(s) if !s.is_empty() => Ok(Self::from_secret(s.as_bytes())),
            _ => Ok(Self::from_secret(
                load_or_create_dev_secret(data_dir)?.as_bytes(),
            )),
        }
    }

    /// A token for `player` with `role`, valid for `ttl_secs` from now.
    pub fn mint(&self, player: &str, role: Role, ttl_secs: u64) -> String {
        let claims = Claims::expiring_in(player, role, ttl_secs);
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .expect("HS256 signing cannot fail")
    }

    /// The principal a token proves, or why it proves nothing.
    pub fn verify(&self, token: &str) -> Result<Principal, AuthError> {
        if token.is_empty() {
            return Err(AuthError::Missing);
        }
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 0;
        validation.set_required_spec_claims(&["exp", "sub"]);
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &validation).map_err(
            |e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => AuthError::Expired,
                _ => AuthError::Invalid(e.to_string()),
            },
        )?;
        if data.claims.sub.is_empty() {
            return Err(AuthError::Invalid("empty subject".into()));
        }
        Ok(Principal {
            player: PlayerId::new(data.claims.sub),
            role: data.claims.role,
        })
    }
}

/// Reads `<dir>/dev-secret`, creating it with 32 random bytes (hex) on first use.
pub fn load_or_create_dev_secret(dir: &Path) -> Result<String, AuthError> {
    let path = dir.join(DEV_SECRET_FILE);
    let err = |source| AuthError::Secret {
        path: path.display().to_string(),
        source,
    };
    if let Ok(existing) = std::fs::read_to_string(&path) {
        let existing = existing.trim().to_owned();
        if !existing.is_empty() {
            return Ok(existing);
        }
    }
    std::fs::create_dir_all(dir).map_err(err)?;
    let secret: String = (0..32)
        .map(|_| format!("{:02x}", rand::random::<u8>()))
        .collect();
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match options.open(&path) {
        Ok(mut file) => {
            std::io::Write::write_all(&mut file, secret.as_bytes()).map_err(err)?;
            Ok(secret)
        }
        // Another process created it first: use theirs.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            Ok(std::fs::read_to_string(&path)
                .map_err(err)?
                .trim()
                .to_owned())
        }
        Err(e) => Err(err(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_minted_token_verifies_and_a_forged_one_does_not() {
        let keys = TokenKeys::from_secret(b"s3cret");
        let token = keys.mint("alice", Role::Player, 60);
        assert_eq!(keys.verify(&token).unwrap(), Principal::player("alice"));
        let other = TokenKeys::from_secret(b"other");
        assert!(matches!(other.verify(&token), Err(AuthError::Invalid(_))));
        assert!(matches!(keys.verify(""), Err(AuthError::Missing)));
    }

    #[test]
    fn the_dev_secret_is_created_once_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let a = load_or_create_dev_secret(dir.path()).unwrap();
        let b = load_or_create_dev_secret(dir.path()).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.len(), 64);
    }
}
