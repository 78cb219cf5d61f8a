//! The console's files as a browser fetches them from the admin listener, and the console URL that
//! `warden token --console` prints.
//!
//! Guards against: a page or script missing from the binary (the console must work offline, from
//! the binary alone), the served JS client drifting from `clients/js`, the pages not finding the
//! game port, and a console URL whose token would reach a server log (it must ride in the fragment).
//! What the pages do is tested in a real browser by `clients/js/test/browser.test.js`.

use std::net::SocketAddr;
use std::process::Command;
use tokio_util::sync::CancellationToken;
use warden::admin::console::{ConsoleConfig, router};
use warden_core::domain::Role;
use warden_net::auth::TokenKeys;

async fn start(game_addr: SocketAddr) -> (String, CancellationToken) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let stop = CancellationToken::new();
    tokio::spawn(warden::admin::serve(
        listener,
        router(ConsoleConfig { game_addr }),
        stop.clone(),
    ));
    (base, stop)
}

async fn get(url: &str) -> (u16, String, String) {
    let response = reqwest::get(url).await.expect("HTTP request");
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (status, content_type, response.text().await.unwrap())
}

#[tokio::test]
async fn the_pages_and_every_script_they_load_come_from_the_binary() {
    let (base, stop) = start("127.0.0.1:7350".parse().unwrap()).await;
    for (path, marker) in [("/", "Warden console"), ("/watch?owner=alice", "Watching")] {
        let (status, content_type, body) = get(&format!("{base}{path}")).await;
        assert_eq!(status, 200, "{path}");
        assert!(
            content_type.starts_with("text/html"),
            "{path}: {content_type}"
        );
        assert!(body.contains(marker), "{path}");
        // Every script and stylesheet the page names is served here, not by a CDN.
        for asset in body
            .split(['"', '\''])
            .filter(|s| s.starts_with("/assets/"))
        {
            let (status, _, _) = get(&format!("{base}{asset}")).await;
            assert_eq!(status, 200, "{path} loads {asset}");
        }
        assert!(
            !body.contains("https://"),
            "{path} loads nothing from elsewhere"
        );
    }
    let (status, content_type, client) = get(&format!("{base}/assets/warden-client.js")).await;
    assert_eq!(status, 200);
    assert!(content_type.starts_with("text/javascript"));
    let source = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("clients/js/src/index.js"),
    )
    .unwrap();
    assert_eq!(client, source, "the console runs clients/js as it is");
    // and every module the client imports by a relative path is served beside it.
    for line in source.lines().filter(|l| l.starts_with("import ")) {
        if let Some(module) = line.split('"').nth(1).and_then(|m| m.strip_prefix("./")) {
            let (status, _, _) = get(&format!("{base}/assets/{module}")).await;
            assert_eq!(status, 200, "warden-client.js imports ./{module}");
        }
    }
    let (status, _, _) = get(&format!("{base}/assets/nope.js")).await;
    assert_eq!(status, 404);
    stop.cancel();
}

#[tokio::test]
async fn the_pages_learn_where_the_game_port_is() {
    let (base, stop) = start("127.0.0.1:7350".parse().unwrap()).await;
    let (_, _, body) = get(&format!("{base}/console/config.json")).await;
    let config: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(config["game_host"], "127.0.0.1");
    assert_eq!(config["game_port"], 7350);
    stop.cancel();
    // Listening on every interface: the page uses the host it was loaded from.
    let (base, stop) = start("0.0.0.0:9000".parse().unwrap()).await;
    let (_, _, body) = get(&format!("{base}/console/config.json")).await;
    let config: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(config["game_host"].is_null());
    assert_eq!(config["game_port"], 9000);
    stop.cancel();
}

#[test]
fn token_console_prints_a_url_with_the_token_in_the_fragment() {
    let dir = tempfile::tempdir().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_warden"))
        .args([
            "token",
            "--player",
            "alice",
            "--role",
            "player",
            "--console",
            "--new-secret",
        ])
        .arg("--data-dir")
        .arg(dir.path())
        .env_remove("WARDEN_SECRET")
        .env_remove("WARDEN_ADMIN_LISTEN")
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let url = String::from_utf8(output.stdout).unwrap();
    let url = url.trim();
    let token = url
        .strip_prefix("http://127.0.0.1:7351/#token=")
        .unwrap_or_else(|| panic!("a console URL on the default admin port: {url}"));
    // The token is the one `serve` on that data directory accepts.
    let keys = TokenKeys::load(dir.path()).unwrap();
    let principal = keys.verify(token).expect("a valid token");
    assert_eq!(principal.player.as_str(), "alice");
    assert_eq!(principal.role, Role::Player);
}

// Guards against `warden token` on a directory no server has run on quietly inventing a secret,
// after which every client gets 401 from the running server.
#[test]
fn token_refuses_to_invent_a_secret_unless_asked() {
    let dir = tempfile::tempdir().unwrap();
    let token = |extra: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_warden"))
            .args(["token", "--player", "alice"])
            .args(extra)
            .arg("--data-dir")
            .arg(dir.path())
            .env_remove("WARDEN_SECRET")
            .output()
            .unwrap()
    };
    let refused = token(&[]);
    assert!(!refused.status.success());
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(said.contains("has no development secret"), "{said}");
    assert!(!dir.path().join("dev-secret").exists(), "nothing created");

    let created = token(&["--new-secret"]);
    assert!(created.status.success(), "{created:?}");
    let said = String::from_utf8_lossy(&created.stderr);
    assert!(
        said.contains("signed with the development secret in"),
        "{said}"
    );
    // From now on the directory has its secret: no flag needed, and the same keys sign.
    let again = token(&[]);
    assert!(again.status.success(), "{again:?}");
    let keys = TokenKeys::load(dir.path()).unwrap();
    for out in [created, again] {
        let token = String::from_utf8(out.stdout).unwrap();
        assert!(keys.verify(token.trim()).is_ok());
    }
}
