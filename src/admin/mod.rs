//! The admin HTTP listener, apart from the game port: `GET /metrics` (Prometheus text),
//! `GET /healthz` (the process runs) and `GET /readyz` (the store answers and the server is not
//! shutting down), so a load balancer drains a node before its sessions close.
//!
//! [`router`] builds the routes over an [`AdminState`]; other admin pages `.merge()` their own
//! `Router` into it ([`console`]: the browser console at `/` and the spectator page at `/watch`). [`serve`] runs any such router on a bound listener until told to stop
//! (tests bind port 0); [`run`] is both in one call.

pub mod console;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use warden_core::metrics::{Metrics, ScrapeGauges};
use warden_core::node::Node;

/// The default admin address (Nakama's console port, beside the game port 7350).
pub const DEFAULT_ADMIN_LISTEN: &str = "127.0.0.1:7351";

/// How long `/readyz` waits for the store before answering 503.
pub const READY_TIMEOUT: Duration = Duration::from_secs(2);

/// What the admin routes read. Cheap to clone.
#[derive(Clone)]
pub struct AdminState {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for AdminState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminState")
            .field("data_dir", &self.inner.data_dir)
            .field("ready_timeout", &self.inner.ready_timeout)
            .finish_non_exhaustive()
    }
}

struct Inner {
    node: Arc<Node>,
    /// Cancelled when graceful shutdown begins: `/readyz` answers 503 from then on, while the
    /// sessions are still finishing.
    draining: CancellationToken,
    /// The embedded store's directory, whose size and free space `/metrics` reports (`None` on
    /// MongoDB).
    data_dir: Option<PathBuf>,
    /// The embedded store's free-space floor, reported beside the free space.
    free_floor: Option<u64>,
    /// How long `/readyz` waits for the store.
    ready_timeout: Duration,
    /// The MongoDB store, whose round trips `/metrics` reports (`None` on the embedded store).
    #[cfg(feature = "mongodb")]
    mongo: Option<Arc<warden_store_mongo::MongoStore>>,
}

impl AdminState {
    /// The admin view of `node`; `draining` is the token whose cancellation starts the game
    /// server's graceful shutdown.
    pub fn new(node: Arc<Node>, draining: CancellationToken) -> Self {
        Self {
            inner: Arc::new(Inner {
                node,
                draining,
                data_dir: None,
                free_floor: None,
                ready_timeout: READY_TIMEOUT,
                #[cfg(feature = "mongodb")]
                mongo: None,
            }),
        }
    }

    /// Reports the size of this directory (the embedded store's) as `warden_store_disk_bytes`,
    /// and the free space of its file system as `warden_store_disk_free_bytes`.
    pub fn with_data_dir(self, dir: impl Into<PathBuf>) -> Self {
        self.rebuild(|i| i.data_dir = Some(dir.into()))
    }

    /// Reports the embedded store's free-space floor (`--min-free-mb`) as
    /// `warden_store_disk_free_floor_bytes`.
    pub fn with_free_floor(self, bytes: u64) -> Self {
        self.rebuild(|i| i.free_floor = Some(bytes))
    }

    /// Reports this MongoDB store's round trips by kind as `warden_store_round_trips_total`.
    #[cfg(feature = "mongodb")]
    pub fn with_mongo(self, store: Arc<warden_store_mongo::MongoStore>) -> Self {
        self.rebuild(|i| i.mongo = Some(store))
    }

    /// `/readyz` answers 503 when the store takes longer than this.
    pub fn with_ready_timeout(self, timeout: Duration) -> Self {
        self.rebuild(|i| i.ready_timeout = timeout)
    }

    fn rebuild(self, change: impl FnOnce(&mut Inner)) -> Self {
        let mut inner = match Arc::try_unwrap(self.inner) {
            Ok(inner) => inner,
            Err(shared) => Inner {
                node: shared.node.clone(),
                draining: shared.draining.clone(),
                data_dir: shared.data_dir.clone(),
                free_floor: shared.free_floor,
                ready_timeout: shared.ready_timeout,
                #[cfg(feature = "mongodb")]
                mongo: shared.mongo.clone(),
            },
        };
        change(&mut inner);
        Self {
            inner: Arc::new(inner),
        }
    }

    pub fn node(&self) -> &Arc<Node> {
        &self.inner.node
    }

    pub fn metrics(&self) -> &Metrics {
        self.inner.node.metrics()
    }
}

/// The admin routes: `/metrics`, `/healthz`, `/readyz`.
pub fn router(state: AdminState) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(state)
}

/// Serves `router` on `listener` until `shutdown` is cancelled, then finishes the requests in
/// progress and returns.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
}

/// [`serve`] of [`router`]`(state)`.
pub async fn run(
    listener: TcpListener,
    state: AdminState,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    serve(listener, router(state), shutdown).await
}

async fn metrics(State(state): State<AdminState>) -> Response {
    if !state.metrics().is_on() {
        return (StatusCode::NOT_FOUND, "metrics are off on this node\n").into_response();
    }
    let node = state.node().clone();
    let data_dir = state.inner.data_dir.clone();
    // Walking the data directory touches the file system: off the async workers.
    let (disk, free) = match data_dir {
        Some(dir) => tokio::task::spawn_blocking(move || {
            (
                Some(dir_bytes(&dir)),
                warden_store_embedded::space::free_bytes(&dir).ok(),
            )
        })
        .await
        .unwrap_or_default(),
        None => (None, None),
    };
    let gauges = ScrapeGauges {
        actors_live: node.registry().live_actors(),
        store_disk_bytes: disk,
        store_disk_free_bytes: free,
        store_disk_free_floor_bytes: state.inner.free_floor,
        relay_streaming: node.has_relay().then(|| node.relay_streaming()),
        #[cfg(feature = "mongodb")]
        store_round_trips: state
            .inner
            .mongo
            .as_ref()
            .map(|m| m.round_trips().by_op())
            .unwrap_or_default(),
        #[cfg(not(feature = "mongodb"))]
        store_round_trips: Vec::new(),
    };
    let body = state.metrics().render(gauges);
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        body,
    )
        .into_response()
}

async fn healthz() -> Response {
    (StatusCode::OK, axum::Json(json!({ "status": "ok" }))).into_response()
}

/// Why `/readyz` says no (its `reason`, docs/operations.md): the probe's vocabulary, apart from
/// the game protocol's error codes.
#[derive(Clone, Copy, Debug, serde::Serialize)]
#[serde(rename_all = "snake_case")]
enum NotReady {
    /// Shutdown has begun: drain this node.
    ShuttingDown,
    /// The store answered with an error.
    StoreUnavailable,
    /// The store did not answer within the bound.
    StoreTimeout,
}

/// 200 when the store answers within the bound and the server is not shutting down; else 503
/// with `{"status": "unavailable", "reason": …}`.
async fn readyz(State(state): State<AdminState>) -> Response {
    let unready = |reason: NotReady, detail: Option<String>| {
        let mut body = json!({ "status": "unavailable", "reason": reason });
        if let Some(detail) = detail {
            body["detail"] = json!(detail);
        }
        (StatusCode::SERVICE_UNAVAILABLE, axum::Json(body)).into_response()
    };
    if state.inner.draining.is_cancelled() {
        return unready(NotReady::ShuttingDown, None);
    }
    let node = state.node().clone();
    let probe = node.queries().probe();
    match tokio::time::timeout(state.inner.ready_timeout, probe).await {
        Ok(Ok(_)) if !state.inner.draining.is_cancelled() => {
            (StatusCode::OK, axum::Json(json!({ "status": "ready" }))).into_response()
        }
        Ok(Ok(_)) => unready(NotReady::ShuttingDown, None),
        Ok(Err(e)) => unready(NotReady::StoreUnavailable, Some(e.to_string())),
        Err(_) => unready(
            NotReady::StoreTimeout,
            Some(format!(
                "the store did not answer within {} ms",
                state.inner.ready_timeout.as_millis()
            )),
        ),
    }
}

/// Bytes of the regular files under `dir` (0 for what cannot be read).
pub fn dir_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .filter_map(Result::ok)
        .map(|entry| match entry.file_type() {
            Ok(t) if t.is_dir() => dir_bytes(&entry.path()),
            Ok(t) if t.is_file() => entry.metadata().map_or(0, |m| m.len()),
            _ => 0,
        })
        .sum()
}
