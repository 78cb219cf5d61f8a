//! `warden serve --jwt-public-key/--jwks` with `--jwt-issuer`/`--jwt-audience`, end to end: a game
//! backend's own ES256 token opens a session as the player it names; one for another audience is
//! refused with a 401 whose JSON body says so; the server's own tokens still work; and the
//! options refuse to start half-configured.
//!
//! Guards against: a trusted-issuer option that parses and is never used, a refusal that reads as
//! a bare 401, and a server that trusts a key without checking whom its tokens are for.

use futures::StreamExt;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;
use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;
use warden_protocol::{Role, ServerMessage};
use warden_testkit::process::ServeProcess;

const KEYS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/crates/net/tests/keys");
const ISS: &str = "https://auth.example-game.com";

fn es256_token(aud: &str, role: Option<&str>) -> String {
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 600;
    let mut claims = json!({"sub": "alice", "iss": ISS, "aud": aud, "exp": exp});
    if let Some(role) = role {
        claims["role"] = json!(role);
    }
    let key = std::fs::read(format!("{KEYS}/es256.pem")).unwrap();
    jsonwebtoken::encode(
        &Header::new(Algorithm::ES256),
        &claims,
        &EncodingKey::from_ec_pem(&key).unwrap(),
    )
    .unwrap()
}

/// Starts `warden serve` trusting the ES256 test key.
fn start(dir: &std::path::Path) -> ServeProcess {
    let key = format!("{KEYS}/es256.pub.pem");
    let args: [&std::ffi::OsStr; 10] = [
        "--admin-listen".as_ref(),
        "off".as_ref(),
        "--data-dir".as_ref(),
        dir.as_os_str(),
        "--jwt-public-key".as_ref(),
        key.as_ref(),
        "--jwt-issuer".as_ref(),
        ISS.as_ref(),
        "--jwt-audience".as_ref(),
        "warden".as_ref(),
    ];
    ServeProcess::start(
        std::path::Path::new(env!("CARGO_BIN_EXE_warden")),
        &args,
        &[],
    )
}

async fn welcome(game: SocketAddr, token: &str) -> (String, Role) {
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{game}/v1?token={token}"))
        .await
        .expect("the upgrade is accepted");
    let frame = tokio::time::timeout(Duration::from_secs(10), ws.next())
        .await
        .expect("welcome in time")
        .unwrap()
        .unwrap();
    match warden_protocol::decode::<ServerMessage>(&frame.into_data()).unwrap() {
        ServerMessage::Welcome { player, role, .. } => (player.as_str().to_owned(), role),
        other => panic!("expected welcome, got {other:?}"),
    }
}

#[tokio::test]
async fn a_trusted_issuers_token_opens_a_session_and_one_for_another_audience_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path());
    let game = server.game;

    assert_eq!(
        welcome(game, &es256_token("warden", None)).await,
        ("alice".to_owned(), Role::Player)
    );
    assert_eq!(
        welcome(game, &es256_token("warden", Some("service"))).await,
        ("alice".to_owned(), Role::Service)
    );
    // The server's own HS256 tokens (its data directory's secret) still work.
    let own =
        warden_net::auth::TokenKeys::load(dir.path())
            .unwrap()
            .mint("bob", Role::Spectator, 60);
    assert_eq!(
        welcome(game, &own).await,
        ("bob".to_owned(), Role::Spectator)
    );

    let (status, body) =
        warden_testkit::process::refused_upgrade(game, &es256_token("another-game", None)).await;
    assert_eq!(status, 401);
    assert_eq!(body["code"], "unauthorized");
    assert!(
        body["message"].as_str().unwrap().contains("audience"),
        "{body}"
    );
}

#[test]
fn a_public_key_without_issuer_and_audience_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_warden"))
        .args(["serve", "--listen", "127.0.0.1:0", "--admin-listen", "off"])
        .arg("--data-dir")
        .arg(dir.path())
        .arg("--jwt-public-key")
        .arg(format!("{KEYS}/es256.pub.pem"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--jwt-issuer") && err.contains("--jwt-audience"),
        "{err}"
    );
    // A file that is no key is named in the error.
    let bad = dir.path().join("bad.pem");
    std::fs::write(&bad, "hello").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_warden"))
        .args(["serve", "--listen", "127.0.0.1:0", "--admin-listen", "off"])
        .arg("--data-dir")
        .arg(dir.path())
        .arg("--jwt-public-key")
        .arg(&bad)
        .args(["--jwt-issuer", ISS, "--jwt-audience", "warden"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad.pem") && err.contains("public key"),
        "{err}"
    );
}
