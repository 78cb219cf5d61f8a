//! Identity: signed tokens (JWT) carrying player id, role and expiry.
//!
//! Two kinds are accepted. **HS256**, signed with the server's own secret: `WARDEN_SECRET` when
//! set; otherwise a development secret created once in the data directory
//! (`<data-dir>/dev-secret`, mode 0600) and reused, so `warden token` and a running server on the
//! same data directory agree without any set-up. And, when configured, tokens of a **trusted
//! issuer** ([`TrustedIssuer`]): a game backend's own identity provider, whose public keys (a PEM
//! file or a JWKS file; EdDSA, ES256 or RS256) Warden holds, and whose `iss` and `aud` every
//! token must name. Which kind a token is follows from its header's `alg`.

use jsonwebtoken::jwk::{AlgorithmParameters, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use std::path::Path;
use std::sync::Arc;
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
    #[error("trusted issuer key {path}: {problem}")]
    IssuerKey { path: String, problem: String },
}

/// Signs and verifies tokens with one secret, and verifies those of a trusted issuer if one is
/// configured.
#[derive(Clone)]
pub struct TokenKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    trusted: Option<Arc<TrustedIssuer>>,
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
            trusted: None,
        }
    }

    /// These keys, also accepting the tokens `issuer` signs.
    pub fn trusting(mut self, issuer: TrustedIssuer) -> Self {
        self.trusted = Some(Arc::new(issuer));
        self
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
        let header = jsonwebtoken::decode_header(token)
            .map_err(|e| AuthError::Invalid(refusal_reason(&e)))?;
        if header.alg != Algorithm::HS256 {
            return match &self.trusted {
                Some(trusted) => trusted.verify(token, &header),
                None => Err(AuthError::Invalid(format!(
                    "this server accepts {:?} tokens only from a trusted issuer, and trusts none",
                    header.alg
                ))),
            };
        }
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 0;
        validation.set_required_spec_claims(&["exp", "sub"]);
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &validation)
            .map_err(|e| refused(&e))?;
        if data.claims.sub.is_empty() {
            return Err(AuthError::Invalid("empty subject".into()));
        }
        Ok(Principal {
            player: PlayerId::new(data.claims.sub),
            role: data.claims.role,
        })
    }
}

/// Why a token was refused, for the client and the log (never the token itself).
fn refused(e: &jsonwebtoken::errors::Error) -> AuthError {
    match e.kind() {
        jsonwebtoken::errors::ErrorKind::ExpiredSignature => AuthError::Expired,
        _ => AuthError::Invalid(refusal_reason(e)),
    }
}

fn refusal_reason(e: &jsonwebtoken::errors::Error) -> String {
    use jsonwebtoken::errors::ErrorKind;
    match e.kind() {
        ErrorKind::InvalidSignature => {
            "the signature does not match a key this server trusts".into()
        }
        ErrorKind::InvalidIssuer => "the issuer (iss) is not the trusted one".into(),
        ErrorKind::InvalidAudience => "the audience (aud) is not this server".into(),
        ErrorKind::MissingRequiredClaim(claim) => format!("the claim `{claim}` is missing"),
        ErrorKind::ImmatureSignature => "the token is not valid yet (nbf)".into(),
        ErrorKind::InvalidAlgorithm => "the algorithm does not match the key".into(),
        ErrorKind::InvalidToken
        | ErrorKind::Base64(_)
        | ErrorKind::Json(_)
        | ErrorKind::Utf8(_) => "it is not a JWT".into(),
        _ => e.to_string(),
    }
}

/// A game backend's identity provider whose tokens Warden accepts: its public keys, and the
/// issuer and audience its tokens must name.
///
/// The player is the token's `sub`; the role its `role` claim (`player`, `spectator` or
/// `service`), `player` when absent; `exp` is required.
#[derive(Clone)]
pub struct TrustedIssuer {
    keys: Vec<TrustedKey>,
    issuer: String,
    audience: String,
}

#[derive(Clone)]
struct TrustedKey {
    /// The JWKS `kid`, if the key came with one.
    kid: Option<String>,
    alg: Algorithm,
    key: DecodingKey,
}

/// The claims read from a trusted issuer's token (`exp`, `iss`, `aud` are checked by the
/// validation).
#[derive(serde::Deserialize)]
struct IssuerClaims {
    sub: String,
    #[serde(default)]
    role: Option<Role>,
}

impl std::fmt::Debug for TrustedIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrustedIssuer")
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("keys", &self.keys.len())
            .finish()
    }
}

impl TrustedIssuer {
    /// One public key in PEM (SubjectPublicKeyInfo): Ed25519 (EdDSA), P-256 (ES256) or RSA
    /// (RS256), told apart by the key itself. `path` names it in errors.
    pub fn from_public_key_pem(
        pem: &[u8],
        path: &str,
        issuer: &str,
        audience: &str,
    ) -> Result<Self, AuthError> {
        let key = [
            (Algorithm::EdDSA, DecodingKey::from_ed_pem(pem)),
            (Algorithm::ES256, DecodingKey::from_ec_pem(pem)),
            (Algorithm::RS256, DecodingKey::from_rsa_pem(pem)),
        ]
        .into_iter()
        .find_map(|(alg, key)| {
            key.ok().map(|key| TrustedKey {
                kid: None,
                alg,
                key,
            })
        })
        .ok_or_else(|| AuthError::IssuerKey {
            path: path.into(),
            problem: "not a PEM public key of Ed25519, P-256 or RSA".into(),
        })?;
        Self::new(vec![key], issuer, audience)
    }

    /// The keys of a JWKS document (`{"keys": [...]}`): OKP Ed25519 (EdDSA), EC P-256 (ES256)
    /// and RSA (RS256) keys; a token picks one by its header's `kid`.
    pub fn from_jwks(
        json: &str,
        path: &str,
        issuer: &str,
        audience: &str,
    ) -> Result<Self, AuthError> {
        let problem = |problem: String| AuthError::IssuerKey {
            path: path.into(),
            problem,
        };
        let set: JwkSet =
            serde_json::from_str(json).map_err(|e| problem(format!("not a JWKS: {e}")))?;
        let mut keys = Vec::with_capacity(set.keys.len());
        for (i, jwk) in set.keys.iter().enumerate() {
            let alg = match &jwk.algorithm {
                AlgorithmParameters::OctetKeyPair(_) => Algorithm::EdDSA,
                AlgorithmParameters::EllipticCurve(p)
                    if p.curve == jsonwebtoken::jwk::EllipticCurve::P256 =>
                {
                    Algorithm::ES256
                }
                AlgorithmParameters::RSA(_) => Algorithm::RS256,
                _ => {
                    return Err(problem(format!(
                        "key {i}: only Ed25519, P-256 and RSA public keys are accepted"
                    )));
                }
            };
            let key = DecodingKey::from_jwk(jwk).map_err(|e| problem(format!("key {i}: {e}")))?;
            keys.push(TrustedKey {
                kid: jwk.common.key_id.clone(),
                alg,
                key,
            });
        }
        Self::new(keys, issuer, audience).map_err(|_| problem("the set holds no key".into()))
    }

    /// The issuer whose keys are in the PEM file `public_key` or the JWKS file `jwks` (exactly
    /// one), with the issuer and audience its tokens must name.
    pub fn from_file(
        public_key: Option<&Path>,
        jwks: Option<&Path>,
        issuer: &str,
        audience: &str,
    ) -> Result<Self, AuthError> {
        let (path, is_jwks) = match (public_key, jwks) {
            (Some(path), None) => (path, false),
            (None, Some(path)) => (path, true),
            _ => {
                return Err(AuthError::IssuerKey {
                    path: String::new(),
                    problem: "give exactly one of a public key and a JWKS file".into(),
                });
            }
        };
        let shown = path.display().to_string();
        let bytes = std::fs::read(path).map_err(|e| AuthError::IssuerKey {
            path: shown.clone(),
            problem: format!("cannot read it: {e}"),
        })?;
        if is_jwks {
            Self::from_jwks(&String::from_utf8_lossy(&bytes), &shown, issuer, audience)
        } else {
            Self::from_public_key_pem(&bytes, &shown, issuer, audience)
        }
    }

    fn new(keys: Vec<TrustedKey>, issuer: &str, audience: &str) -> Result<Self, AuthError> {
        if keys.is_empty() {
            return Err(AuthError::IssuerKey {
                path: String::new(),
                problem: "no key".into(),
            });
        }
        Ok(Self {
            keys,
            issuer: issuer.into(),
            audience: audience.into(),
        })
    }

    fn verify(&self, token: &str, header: &Header) -> Result<Principal, AuthError> {
        let key = match &header.kid {
            Some(kid) => self.keys.iter().find(|k| k.kid.as_deref() == Some(kid)),
            None => self.keys.iter().find(|k| k.alg == header.alg),
        }
        .ok_or_else(|| {
            AuthError::Invalid(match &header.kid {
                Some(kid) => format!("no trusted key has the id (kid) {kid:?}"),
                None => format!("no trusted key is for {:?}", header.alg),
            })
        })?;
        if key.alg != header.alg {
            return Err(AuthError::Invalid(
                "the algorithm does not match the key".into(),
            ));
        }
        let mut validation = Validation::new(key.alg);
        validation.leeway = 0;
        validation.set_required_spec_claims(&["exp", "sub", "iss", "aud"]);
        validation.set_issuer(&[&self.issuer]);
        validation.set_audience(&[&self.audience]);
        let data = jsonwebtoken::decode::<IssuerClaims>(token, &key.key, &validation)
            .map_err(|e| refused(&e))?;
        if data.claims.sub.is_empty() {
            return Err(AuthError::Invalid("empty subject".into()));
        }
        Ok(Principal {
            player: PlayerId::new(data.claims.sub),
            role: data.claims.role.unwrap_or(Role::Player),
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
