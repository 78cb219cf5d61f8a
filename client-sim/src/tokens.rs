//! Where client-sim gets its tokens: it signs them itself with the server's secret (`--secret` /
//! `WARDEN_SECRET`, or the development secret in the server's data directory).

use std::path::Path;
use thiserror::Error;
use warden::auth::{DEV_SECRET_FILE, TokenKeys};
use warden::domain::Role;

/// Lifetime of the tokens client-sim mints: longer than any run.
pub const TOKEN_TTL_SECS: u64 = 24 * 60 * 60;

#[derive(Debug, Error)]
pub enum TokenError {
    #[error(
        "no secret: {path} is missing or empty; start the server on that data directory first \
         (it creates the development secret), or pass --secret / WARDEN_SECRET"
    )]
    NoDevSecret { path: String },
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

    #[test]
    fn the_dev_secret_is_read_but_never_invented() {
        // Guards against minting tokens with a secret the server has never seen.
        let dir = tempfile::tempdir().unwrap();
        assert!(load_keys(None, dir.path()).is_err());
        assert!(!dir.path().join(DEV_SECRET_FILE).exists());
        let server_secret = warden::auth::load_or_create_dev_secret(dir.path()).unwrap();
        let keys = load_keys(None, dir.path()).unwrap();
        let server_keys = TokenKeys::from_secret(server_secret.as_bytes());
        let token = mint(&keys, "bot-1", Role::Player);
        assert_eq!(server_keys.verify(&token).unwrap().player.as_str(), "bot-1");
    }
}
