//! The browser console and the spectator page, served by the admin listener from files built into
//! the binary (no runtime download, no CDN: the pages work offline).
//!
//! `/` is the console, `/watch?owner=ID` the spectator page; `/assets/…` their scripts, the
//! JavaScript client of `clients/js` and the vendored `@msgpack/msgpack` it uses; and
//! `/console/config.json` tells the pages where the game port is. The token never travels to
//! this listener: it rides in the URL fragment (`#token=…`) or is pasted, and the pages send it
//! only to the game port.

use axum::Router;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;
use std::net::SocketAddr;

/// One file built into the binary.
struct Asset {
    path: &'static str,
    content_type: &'static str,
    body: &'static str,
}

const HTML: &str = "text/html; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";

const ASSETS: &[Asset] = &[
    Asset {
        path: "/assets/console.js",
        content_type: JS,
        body: include_str!("console/console.js"),
    },
    Asset {
        path: "/assets/watch.js",
        content_type: JS,
        body: include_str!("console/watch.js"),
    },
    Asset {
        path: "/assets/common.js",
        content_type: JS,
        body: include_str!("console/common.js"),
    },
    Asset {
        path: "/assets/console.css",
        content_type: CSS,
        body: include_str!("console/console.css"),
    },
    Asset {
        path: "/assets/warden-client.js",
        content_type: JS,
        body: include_str!("../../clients/js/src/index.js"),
    },
    Asset {
        path: "/assets/codes.js",
        content_type: JS,
        body: include_str!("../../clients/js/src/codes.js"),
    },
    Asset {
        path: "/assets/msgpack.min.js",
        content_type: JS,
        body: include_str!("console/vendor/msgpack.min.js"),
    },
    Asset {
        path: "/assets/msgpack-esm.js",
        content_type: JS,
        body: include_str!("console/vendor/msgpack-esm.js"),
    },
];

const INDEX: &str = include_str!("console/index.html");
const WATCH: &str = include_str!("console/watch.html");

/// The pages may load scripts and styles from here only, and open WebSockets anywhere (the game
/// port is another origin). The import map is the one inline script.
const CSP: &str = "default-src 'self'; script-src 'self' 'unsafe-inline'; \
     style-src 'self' 'unsafe-inline'; connect-src 'self' ws: wss:; img-src 'self' data:; \
     frame-ancestors *";

/// What the pages need to know about this server.
#[derive(Clone, Copy, Debug)]
pub struct ConsoleConfig {
    /// Where the game port listens; an unspecified IP (0.0.0.0) means "the host the page came from".
    pub game_addr: SocketAddr,
}

/// The console's routes, to `.merge()` into the admin router.
pub fn router(config: ConsoleConfig) -> Router {
    let mut router = Router::new()
        .route("/", get(|| async { page(HTML, INDEX) }))
        .route("/watch", get(|| async { page(HTML, WATCH) }))
        .route(
            "/console/config.json",
            get(move || async move { config_json(config) }),
        );
    for asset in ASSETS {
        router = router.route(
            asset.path,
            get(move || async move { page(asset.content_type, asset.body) }),
        );
    }
    router
}

fn page(content_type: &'static str, body: &'static str) -> Response {
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
            (
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(CSP),
            ),
            (
                header::REFERRER_POLICY,
                HeaderValue::from_static("no-referrer"),
            ),
        ],
        body,
    )
        .into_response()
}

fn config_json(config: ConsoleConfig) -> Response {
    let ip = config.game_addr.ip();
    let host = (!ip.is_unspecified()).then(|| ip.to_string());
    (
        [(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"))],
        axum::Json(json!({
            "game_host": host,
            "game_port": config.game_addr.port(),
        })),
    )
        .into_response()
}

/// The console URL for an admin listener at `admin`, carrying `token` in the fragment (which a
/// browser never sends to the server, so it never reaches a log).
pub fn console_url(admin: SocketAddr, token: &str) -> String {
    let host = match admin.ip() {
        ip if ip.is_unspecified() => "127.0.0.1".to_string(),
        std::net::IpAddr::V6(ip) => format!("[{ip}]"),
        ip => ip.to_string(),
    };
    format!("http://{host}:{}/#token={token}", admin.port())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_console_url_carries_the_token_in_the_fragment() {
        let url = console_url("0.0.0.0:7351".parse().unwrap(), "a.b.c");
        assert_eq!(url, "http://127.0.0.1:7351/#token=a.b.c");
        let url = console_url("[::1]:9000".parse().unwrap(), "t");
        assert_eq!(url, "http://[::1]:9000/#token=t");
    }
}
