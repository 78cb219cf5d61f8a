//! Where client-sim gets its tokens: it signs them itself, HS256 over the claims of
//! [`warden_protocol::token::Claims`], with the server's secret (`--secret` / `WARDEN_SECRET`, or
//! the development secret in the server's data directory), exactly as the server's `warden token`
//! does.

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use std::path::Path;
use thiserror::Error;
use warden_protocol::Role;
use warden_protocol::token::Claims;

/// Lifetime of the tokens client-sim mints: longer than any run.
pub const TOKEN_TTL_SECS: u64 = 24 * 60 * 60;

/// File name of the server's development secret inside its data directory (the server writes
/// 32 random bytes there as 64 hex digits, mode 0600, on first start).
pub const DEV_SECRET_FILE: &str = "dev-secret";

#[derive(Debug, Error)]
pub enum TokenError {
    #[error(
        "no secret: {path} is missing or empty; start the server on that data directory first \
         (it creates the development secret), or pass --secret / WARDEN_SECRET"
    )]
    NoDevSecret { path: String },
}

/// Signs tokens with one secret.
#[derive(Clone)]
pub struct TokenKeys {
    encoding: EncodingKey,
}

impl std::fmt::Debug for TokenKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenKeys(..)")
    }
}

impl TokenKeys {
    /// The keys for `secret` (the bytes the server signs with: `WARDEN_SECRET` as given, or the
    /// development secret's hex text).
    pub fn from_secret(secret: &[u8]) -> Self {
        Self {
            encoding: EncodingKey::from_secret(secret),
        }
    }

    /// A token for `player` with `role`, valid for `ttl_secs` from now.
    pub fn mint(&self, player: &str, role: Role, ttl_secs: u64) -> String {
        let claims = Claims::expiring_in(player, role, ttl_secs);
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .expect("HS256 signing cannot fail")
    }
}

/// The keys for `secret` when given, else the development secret of `data_dir`.
///
/// Unlike the server, this never creates a secret: one the server does not know would only mint
/// tokens it refuses.
pub fn load_keys(secret: Option<&str>, data_dir: &Path) -> Result<TokenKeys, TokenError> {
    if let Some(s) = secret.filter(|s| !s.is_empty()) {
        return Ok(TokenKeys::from_secret(s.as_bytes()));
    }
    let path = data_dir.join(DEV_SECRET_FILE);
    match std::fs::read_to_string(&path) {
        Ok(s) if !s.trim().is_empty() => Ok(TokenKeys::from_secret(s.trim().as_bytes())),
        _ => Err(TokenError::NoDevSecret {
            path: path.display().to_string(),
        }),
    }
}

/// A token for `id` in `role`, valid for [`TOKEN_TTL_SECS`].
pub fn mint(keys: &TokenKeys, id: &str, role: Role) -> String {
    keys.mint(id, role, TOKEN_TTL_SECS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{DecodingKey, Validation};

    #[test]
    fn the_dev_secret_is_read_but_never_invented_and_signs_what_the_server_verifies() {
        // Guards against minting tokens with a secret the server has never seen, and against
        // claims the server would not accept (it verifies HS256 with `exp` and `sub` required).
        let dir = tempfile::tempdir().unwrap();
        assert!(load_keys(None, dir.path()).is_err());
        assert!(!dir.path().join(DEV_SECRET_FILE).exists());

        // What the server writes on first start: 64 hex digits.
        let secret = "0123456789abcdef".repeat(4);
        std::fs::write(dir.path().join(DEV_SECRET_FILE), format!("{secret}\n")).unwrap();
        let keys = load_keys(None, dir.path()).unwrap();
        let token = mint(&keys, "bot-1", Role::Player);

        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_required_spec_claims(&["exp", "sub"]);
        let verified = jsonwebtoken::decode::<Claims>(
            &token,
            &DecodingKey::from_secret(secret.as_bytes()),
            &validation,
        )
        .unwrap()
        .claims;
        assert_eq!(
            (verified.sub.as_str(), verified.role),
            ("bot-1", Role::Player)
        );
        assert_eq!(verified.exp - verified.iat, TOKEN_TTL_SECS);

        // An explicit secret wins over the data directory's.
        let other = load_keys(Some("other"), dir.path()).unwrap();
        let token = mint(&other, "bot-1", Role::Player);
        assert!(
            jsonwebtoken::decode::<Claims>(
                &token,
                &DecodingKey::from_secret(secret.as_bytes()),
                &validation
            )
            .is_err()
        );
    }
}
