//! Tokens of a trusted issuer (a game backend's identity provider): EdDSA, ES256 and RS256
//! public keys, from a PEM file or a JWKS document, with the issuer and audience checked.
//!
//! Guards against: accepting a token signed by another key, or naming another issuer or
//! audience, or expired; confusing algorithms (an HS256 token "signed" with the public key); a
//! refusal that does not say which check failed; and the server's own HS256 tokens no longer
//! working once an issuer is trusted. The keys in `tests/keys/` were made for these tests only.

use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;
use warden_core::domain::{Principal, Role};
use warden_net::auth::{AuthError, TokenKeys, TrustedIssuer};

const ISS: &str = "https://auth.example-game.com";
const AUD: &str = "warden";

fn key(name: &str) -> Vec<u8> {
    std::fs::read(format!("{}/tests/keys/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

fn encoding(alg: Algorithm) -> EncodingKey {
    match alg {
        Algorithm::EdDSA => EncodingKey::from_ed_pem(&key("ed25519.pem")).unwrap(),
        Algorithm::ES256 => EncodingKey::from_ec_pem(&key("es256.pem")).unwrap(),
        Algorithm::RS256 => EncodingKey::from_rsa_pem(&key("rs256.pem")).unwrap(),
        other => panic!("{other:?}"),
    }
}

fn public_pem(alg: Algorithm) -> Vec<u8> {
    key(match alg {
        Algorithm::EdDSA => "ed25519.pub.pem",
        Algorithm::ES256 => "es256.pub.pem",
        Algorithm::RS256 => "rs256.pub.pem",
        other => panic!("{other:?}"),
    })
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A token signed with `alg`'s test key, with these claims and `kid`.
fn token(alg: Algorithm, kid: Option<&str>, claims: serde_json::Value) -> String {
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_owned);
    jsonwebtoken::encode(&header, &claims, &encoding(alg)).unwrap()
}

fn good_claims() -> serde_json::Value {
    json!({"sub": "alice", "iss": ISS, "aud": AUD, "exp": now() + 600})
}

fn trusting_pem(alg: Algorithm) -> TokenKeys {
    let issuer = TrustedIssuer::from_public_key_pem(&public_pem(alg), "test", ISS, AUD).unwrap();
    TokenKeys::from_secret(b"own secret").trusting(issuer)
}

fn refusal(keys: &TokenKeys, token: &str) -> String {
    match keys.verify(token) {
        Err(AuthError::Invalid(why)) => why,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn each_algorithm_verifies_with_its_public_key_and_no_other() {
    for alg in [Algorithm::EdDSA, Algorithm::ES256, Algorithm::RS256] {
        let keys = trusting_pem(alg);
        assert_eq!(
            keys.verify(&token(alg, None, good_claims())).unwrap(),
            Principal::player("alice"),
            "{alg:?}"
        );
        // A token of the other algorithms is not signed by the trusted key.
        for other in [Algorithm::EdDSA, Algorithm::ES256, Algorithm::RS256] {
            if other != alg {
                let why = refusal(&keys, &token(other, None, good_claims()));
                assert!(
                    why.contains("no trusted key"),
                    "{alg:?} vs {other:?}: {why}"
                );
            }
        }
    }
}

#[test]
fn the_role_claim_is_read_and_a_missing_one_is_a_player() {
    let keys = trusting_pem(Algorithm::ES256);
    let mut claims = good_claims();
    claims["role"] = json!("service");
    assert_eq!(
        keys.verify(&token(Algorithm::ES256, None, claims)).unwrap(),
        Principal::service("alice")
    );
    let mut claims = good_claims();
    claims["role"] = json!("emperor");
    assert!(keys.verify(&token(Algorithm::ES256, None, claims)).is_err());
}

#[test]
fn issuer_audience_expiry_and_subject_are_checked_and_named() {
    let keys = trusting_pem(Algorithm::EdDSA);
    let with = |field: &str, value: serde_json::Value| {
        let mut claims = good_claims();
        claims[field] = value;
        token(Algorithm::EdDSA, None, claims)
    };
    let why = refusal(&keys, &with("iss", json!("https://evil.example")));
    assert!(why.contains("issuer"), "{why}");
    let why = refusal(&keys, &with("aud", json!("another-game")));
    assert!(why.contains("audience"), "{why}");
    assert!(matches!(
        keys.verify(&with("exp", json!(now() - 5))),
        Err(AuthError::Expired)
    ));
    let mut claims = good_claims();
    claims.as_object_mut().unwrap().remove("aud");
    let why = refusal(&keys, &token(Algorithm::EdDSA, None, claims));
    assert!(why.contains("`aud` is missing"), "{why}");
    let why = refusal(&keys, &with("sub", json!("")));
    assert!(why.contains("empty subject"), "{why}");
}

#[test]
fn an_hs256_token_made_with_the_public_key_as_secret_is_refused() {
    // The classic confusion: the attacker knows the public key and HMACs with it.
    let keys = trusting_pem(Algorithm::RS256);
    let forged = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &json!({"sub": "admin", "role": "service", "iss": ISS, "aud": AUD, "exp": now() + 600, "iat": now()}),
        &EncodingKey::from_secret(&public_pem(Algorithm::RS256)),
    )
    .unwrap();
    let why = refusal(&keys, &forged);
    assert!(why.contains("signature"), "{why}");
}

#[test]
fn the_servers_own_tokens_still_verify_and_foreign_ones_need_a_trusted_issuer() {
    let keys = trusting_pem(Algorithm::ES256);
    let own = keys.mint("bob", Role::Spectator, 60);
    assert_eq!(keys.verify(&own).unwrap(), Principal::spectator("bob"));
    let untrusting = TokenKeys::from_secret(b"own secret");
    let why = refusal(&untrusting, &token(Algorithm::ES256, None, good_claims()));
    assert!(why.contains("trusts none"), "{why}");
    assert!(refusal(&untrusting, "garbage").contains("not a JWT"));
}

#[test]
fn a_jwks_picks_the_key_by_kid() {
    let jwk = |alg, kid: &str| {
        let mut jwk = Jwk::from_encoding_key(&encoding(alg), alg).unwrap();
        jwk.common.key_id = Some(kid.into());
        jwk
    };
    let set = JwkSet {
        keys: vec![
            jwk(Algorithm::EdDSA, "ed-1"),
            jwk(Algorithm::ES256, "ec-1"),
            jwk(Algorithm::RS256, "rsa-1"),
        ],
    };
    let issuer =
        TrustedIssuer::from_jwks(&serde_json::to_string(&set).unwrap(), "jwks", ISS, AUD).unwrap();
    let keys = TokenKeys::from_secret(b"own secret").trusting(issuer);
    for (alg, kid) in [
        (Algorithm::EdDSA, "ed-1"),
        (Algorithm::ES256, "ec-1"),
        (Algorithm::RS256, "rsa-1"),
    ] {
        assert_eq!(
            keys.verify(&token(alg, Some(kid), good_claims())).unwrap(),
            Principal::player("alice"),
            "{kid}"
        );
    }
    let why = refusal(&keys, &token(Algorithm::ES256, Some("ec-2"), good_claims()));
    assert!(why.contains("\"ec-2\""), "{why}");
    // A kid naming a key of another algorithm is refused, not tried with the wrong one.
    let why = refusal(
        &keys,
        &token(Algorithm::ES256, Some("rsa-1"), good_claims()),
    );
    assert!(why.contains("algorithm"), "{why}");
    assert!(matches!(
        TrustedIssuer::from_jwks("{\"keys\": []}", "empty.json", ISS, AUD),
        Err(AuthError::IssuerKey { .. })
    ));
    assert!(matches!(
        TrustedIssuer::from_public_key_pem(b"not a key", "x.pem", ISS, AUD),
        Err(AuthError::IssuerKey { .. })
    ));
}
