//! The accept loop: a connection cap, the authenticated WebSocket upgrade, and graceful shutdown.

use crate::auth::{AuthError, TokenKeys};
use crate::reply::Coded;
use crate::session::{self, Ctx};
use crate::{NetConfig, NetError, NetStats};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::{HeaderValue, StatusCode};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use warden_core::domain::Principal;
use warden_core::node::Node;
use warden_protocol::{ErrorCode, SUBPROTOCOL};

/// A WebSocket server over a bound listener. [`Server::stats`] exposes its counters.
pub struct Server {
    listener: TcpListener,
    ctx: Arc<Ctx>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("listener", &self.listener)
            .field("config", &self.ctx.config)
            .finish_non_exhaustive()
    }
}

impl Server {
    pub fn new(listener: TcpListener, node: Arc<Node>, keys: TokenKeys, config: NetConfig) -> Self {
        let ctx = Arc::new(Ctx {
            node,
            keys,
            config,
            stats: Arc::new(NetStats::default()),
            refusals: RefusalLog::default(),
        });
        Self { listener, ctx }
    }

    pub fn local_addr(&self) -> Result<SocketAddr, NetError> {
        self.listener.local_addr().map_err(NetError::Listener)
    }

    pub fn stats(&self) -> Arc<NetStats> {
        self.ctx.stats.clone()
    }

    /// Serves until `shutdown` is cancelled, then stops accepting, lets every session finish its
    /// in-flight requests and close with 1001, and returns once all sessions have ended. The
    /// caller then shuts the node down (`Node::shutdown`).
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), NetError> {
        let Server { listener, ctx } = self;
        let permits = Arc::new(Semaphore::new(ctx.config.max_connections.max(1)));
        let sessions = TaskTracker::new();
        let mut backoff = Duration::from_millis(5);
        loop {
            let permit = tokio::select! {
                p = permits.clone().acquire_owned() => match p {
                    Ok(p) => p,
                    Err(_) => break, // the semaphore is never closed
                },
                _ = shutdown.cancelled() => break,
            };
            let accepted = tokio::select! {
                r = listener.accept() => r,
                _ = shutdown.cancelled() => break,
            };
            let (stream, peer) = match accepted {
                Ok(ok) => {
                    backoff = Duration::from_millis(5);
                    ok
                }
                Err(e) => {
                    // Typically out of file descriptors: wait a little and keep serving.
                    tracing::warn!(error = %e, "accept failed; backing off");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                    continue;
                }
            };
            NetStats::bump(&ctx.stats.accepted);
            let ctx = ctx.clone();
            let shutdown = shutdown.clone();
            sessions.spawn(async move {
                let _permit = permit;
                connection(stream, peer, ctx, shutdown).await;
            });
        }
        drop(listener);
        tracing::info!(
            sessions = sessions.len(),
            "stopped accepting; finishing sessions"
        );
        sessions.close();
        sessions.wait().await;
        Ok(())
    }
}

/// Serves `node` on `listener` until `shutdown` is cancelled (see [`Server::run`]).
pub async fn serve(
    listener: TcpListener,
    node: Arc<Node>,
    keys: TokenKeys,
    config: NetConfig,
    shutdown: CancellationToken,
) -> Result<(), NetError> {
    Server::new(listener, node, keys, config)
        .run(shutdown)
        .await
}

/// Upgrades one connection (authenticating it) and runs its session.
// tungstenite's handshake callback must return its `ErrorResponse` (an HTTP response) unboxed.
#[allow(clippy::result_large_err)]
async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    ctx: Arc<Ctx>,
    shutdown: CancellationToken,
) {
    let _ = stream.set_nodelay(true);
    let ws_config = WebSocketConfig::default()
        .read_buffer_size(ctx.config.read_buffer_bytes)
        .write_buffer_size(ctx.config.write_buffer_bytes)
        .max_message_size(Some(ctx.config.max_frame_bytes))
        .max_frame_size(Some(ctx.config.max_frame_bytes));
    let mut principal: Option<Principal> = None;
    let mut refused: Option<(ErrorCode, String)> = None;
    let keys = &ctx.keys;
    let callback = |request: &Request, response: Response| {
        let (p, response) = authorize_upgrade(keys, request, response).map_err(|(code, why)| {
            let answer = refusal(code, &why);
            refused = Some((code, why));
            answer
        })?;
        principal = Some(p);
        Ok(response)
    };
    // Boxed so the task's own allocation is sized for the session, not for the handshake that
    // runs once (this keeps an idle session smaller).
    let upgrade = Box::pin(tokio_tungstenite::accept_hdr_async_with_config(
        stream,
        callback,
        Some(ws_config),
    ));
    let ws = match tokio::time::timeout(ctx.config.handshake_timeout, upgrade).await {
        Ok(Ok(ws)) => ws,
        Ok(Err(e)) => {
            NetStats::bump(&ctx.stats.refused);
            ctx.node.metrics().connection_refused();
            match refused {
                Some((code, why)) => ctx.refusals.log(peer, code, &why),
                None => tracing::debug!(%peer, error = %e, "upgrade failed"),
            }
            return;
        }
        Err(_) => {
            NetStats::bump(&ctx.stats.refused);
            ctx.node.metrics().connection_refused();
            tracing::debug!(%peer, "upgrade timed out");
            return;
        }
    };
    let Some(principal) = principal else {
        return; // unreachable: the callback ran and accepted
    };
    // One line when a session opens and one when it closes (never the token).
    let player = principal.player.clone();
    let role = principal.role.as_str();
    tracing::info!(%peer, %player, role, "connection opened");
    let opened = std::time::Instant::now();
    let closed = session::run(ws, principal, ctx, shutdown).await;
    tracing::info!(
        %peer,
        %player,
        role,
        duration_ms = u64::try_from(opened.elapsed().as_millis()).unwrap_or(u64::MAX),
        close_code = closed.code.map_or_else(|| "client".to_string(), |c| c.to_string()),
        close_reason = closed.reason,
        messages_in = closed.messages_in,
        messages_out = closed.messages_out,
        "connection closed"
    );
}

/// Checks the upgrade request: path `/` or `/v1`, subprotocol `warden.v1` if any is offered, and
/// a valid token in `?token=` or `Authorization: Bearer`. A refusal is its code and which check
/// failed; [`refusal`] makes it the HTTP answer, with a JSON body `{"code": …, "message": …}`.
fn authorize_upgrade(
    keys: &TokenKeys,
    request: &Request,
    mut response: Response,
) -> Result<(Principal, Response), (ErrorCode, String)> {
    let path = request.uri().path();
    if path != "/" && path != "/v1" {
        return Err((ErrorCode::NotFound, "the WebSocket endpoint is /v1".into()));
    }
    if let Some(offered) = request.headers().get("sec-websocket-protocol") {
        let offered = offered.to_str().unwrap_or("");
        if offered.split(',').any(|p| p.trim() == SUBPROTOCOL) {
            response.headers_mut().insert(
                "sec-websocket-protocol",
                HeaderValue::from_static(SUBPROTOCOL),
            );
        } else {
            return Err((
                ErrorCode::UnsupportedProtocol,
                "this server speaks subprotocol warden.v1 only".into(),
            ));
        }
    }
    let token = token_from(request);
    match keys.verify(token.unwrap_or("")) {
        Ok(principal) => Ok((principal, response)),
        Err(e) => {
            // Which check failed, never the token itself.
            let message = match &e {
                AuthError::Missing => {
                    "a token is required: ?token=… or Authorization: Bearer …".to_string()
                }
                AuthError::Expired => "the token has expired".to_string(),
                AuthError::Invalid(why) => format!("the token is not valid: {why}"),
                AuthError::Secret { .. } | AuthError::IssuerKey { .. } => {
                    "the server cannot read its keys".to_string()
                }
            };
            Err((e.code(), message))
        }
    }
}

/// The token from the query string (`token=`) or an `Authorization: Bearer` header.
fn token_from(request: &Request) -> Option<&str> {
    let from_query = request.uri().query().and_then(|q| {
        q.split('&')
            .find_map(|pair| pair.strip_prefix("token="))
            .filter(|t| !t.is_empty())
    });
    from_query.or_else(|| {
        request
            .headers()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .map(str::trim)
    })
}

/// The HTTP answer to a refused upgrade: the status its code calls for, and a JSON body with the
/// code and what failed.
fn refusal(code: ErrorCode, message: &str) -> ErrorResponse {
    let status = match code {
        ErrorCode::NotFound => StatusCode::NOT_FOUND,
        ErrorCode::UnsupportedProtocol => StatusCode::BAD_REQUEST,
        ErrorCode::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        _ => StatusCode::UNAUTHORIZED,
    };
    let body = serde_json::json!({ "code": code, "message": message }).to_string();
    let mut response = ErrorResponse::new(Some(body));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert("content-type", HeaderValue::from_static("application/json"));
    response
}

/// Logs refused upgrades, at most one line a second: the first refusal of each second is logged
/// with its peer, code and reason (never the token); the ones after it in that second are only
/// counted, and the next line says how many were not logged.
#[derive(Debug, Default)]
pub(crate) struct RefusalLog {
    /// The second (since the Unix epoch) of the last line logged.
    last_second: std::sync::atomic::AtomicU64,
    /// Refusals since that line that were not logged.
    unlogged: std::sync::atomic::AtomicU64,
}

impl RefusalLog {
    pub(crate) fn log(&self, peer: SocketAddr, code: ErrorCode, why: &str) {
        use std::sync::atomic::Ordering::Relaxed;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let last = self.last_second.load(Relaxed);
        if now == last
            || self
                .last_second
                .compare_exchange(last, now, Relaxed, Relaxed)
                .is_err()
        {
            self.unlogged.fetch_add(1, Relaxed);
            return;
        }
        let unlogged = self.unlogged.swap(0, Relaxed);
        tracing::info!(%peer, code = code.as_str(), reason = why, unlogged, "upgrade refused");
    }
}
