//! One WebSocket connection to a Warden server: connect with a token, read `welcome`, send and
//! receive protocol messages; and [`Client`], a shared handle that pipelines requests over one
//! connection and matches replies by `req`.

use futures::{SinkExt, StreamExt};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use thiserror::Error;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use warden::domain::{PlayerId, Role, Timestamp};
use warden::protocol::{self, ClientMessage, Limits, RequestId, ServerMessage};

/// A client-side WebSocket to the server.
pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Read buffer of every connection: 4 KiB instead of tungstenite's 128 KiB default, so ten
/// thousand idle bots cost tens of megabytes, not more than a gigabyte.
pub const READ_BUFFER_BYTES: usize = 4 * 1024;
/// How long the server has to answer the upgrade and send `welcome`.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

#[derive(Debug, Error)]
pub enum ConnError {
    #[error("cannot connect to {url}: {source}")]
    Connect {
        url: String,
        source: Box<tungstenite::Error>,
    },
    #[error("the server refused the connection with HTTP {status}")]
    Refused { status: u16 },
    #[error("websocket: {0}")]
    Ws(#[from] Box<tungstenite::Error>),
    #[error("the server closed the connection{}", .0.as_deref().map(|r| format!(": {r}")).unwrap_or_default())]
    Closed(Option<String>),
    #[error("cannot decode a server message: {0}")]
    Decode(String),
    #[error("expected welcome first, got {0}")]
    NoWelcome(String),
    #[error("no answer in time")]
    Timeout,
}

impl From<tungstenite::Error> for ConnError {
    fn from(e: tungstenite::Error) -> Self {
        ConnError::Ws(Box::new(e))
    }
}

/// What the server said in `welcome`.
#[derive(Clone, Debug)]
pub struct Welcome {
    pub protocol: u32,
    pub player: PlayerId,
    pub role: Role,
    pub server_time: Timestamp,
    pub limits: Limits,
}

/// The endpoint URL for a base URL and a token: `ws://host:port` becomes
/// `ws://host:port/v1?token=…` (a base that already ends in `/v1` is kept).
pub fn endpoint(base: &str, token: &str) -> String {
    let base = base.trim_end_matches('/');
    let path = if base.ends_with("/v1") { "" } else { "/v1" };
    format!("{base}{path}?token={token}")
}

/// The WebSocket settings every connection uses.
pub fn ws_config() -> WebSocketConfig {
    WebSocketConfig::default().read_buffer_size(READ_BUFFER_BYTES)
}

/// Opens a connection and reads the server's `welcome`.
pub async fn connect(base: &str, token: &str) -> Result<(Ws, Welcome), ConnError> {
    let url = endpoint(base, token);
    let attempt = async {
        let (mut ws, _) =
            tokio_tungstenite::connect_async_with_config(url.as_str(), Some(ws_config()), true)
                .await
                .map_err(|e| match e {
                    tungstenite::Error::Http(resp) => ConnError::Refused {
                        status: resp.status().as_u16(),
                    },
                    other => ConnError::Connect {
                        url: base.to_owned(),
                        source: Box::new(other),
                    },
                })?;
        match recv(&mut ws).await? {
            ServerMessage::Welcome {
                protocol,
                player,
                role,
                server_time,
                limits,
            } => Ok((
                ws,
                Welcome {
                    protocol,
                    player,
                    role,
                    server_time,
                    limits,
                },
            )),
            other => Err(ConnError::NoWelcome(format!("{other:?}"))),
        }
    };
    tokio::time::timeout(CONNECT_TIMEOUT, attempt)
        .await
        .map_err(|_| ConnError::Timeout)?
}

/// [`connect`], tried again with a growing pause (100 ms doubling to 2 s, with jitter) until it
/// succeeds or `window` has passed since the first try: long enough to ride out a server
/// restart. `on_failure` is called for each failed try.
pub async fn connect_patiently(
    base: &str,
    token: &str,
    window: Duration,
    mut on_failure: impl FnMut(&ConnError),
) -> Result<(Ws, Welcome), ConnError> {
    let give_up = tokio::time::Instant::now() + window;
    let mut pause = Duration::from_millis(100);
    loop {
        match connect(base, token).await {
            Ok(ok) => return Ok(ok),
            Err(e) => {
                on_failure(&e);
                if tokio::time::Instant::now() + pause > give_up {
                    return Err(e);
                }
                // Jitter spreads a thousand clients' retries instead of a stampede.
                let jitter = rand::random_range(0..=pause.as_millis() as u64 / 2);
                tokio::time::sleep(pause + Duration::from_millis(jitter)).await;
                pause = (pause * 2).min(Duration::from_secs(2));
            }
        }
    }
}

/// Sends one message as a binary frame.
pub async fn send(ws: &mut Ws, msg: &ClientMessage) -> Result<(), ConnError> {
    ws.send(Message::Binary(protocol::encode(msg).into()))
        .await
        .map_err(ConnError::from)
}

/// Sends bytes already encoded (a retry resends the same bytes).
pub async fn send_bytes(ws: &mut Ws, frame: bytes::Bytes) -> Result<(), ConnError> {
    ws.send(Message::Binary(frame))
        .await
        .map_err(ConnError::from)
}

/// The next protocol message; pings are answered by tungstenite, other control frames skipped.
pub async fn recv(ws: &mut Ws) -> Result<ServerMessage, ConnError> {
    loop {
        match ws.next().await {
            None => return Err(ConnError::Closed(None)),
            Some(Err(e)) => return Err(e.into()),
            Some(Ok(Message::Binary(bytes))) => {
                return protocol::decode::<ServerMessage>(&bytes)
                    .map_err(|e| ConnError::Decode(e.to_string()));
            }
            Some(Ok(Message::Close(frame))) => {
                return Err(ConnError::Closed(
                    frame.map(|f| format!("{} {}", u16::from(f.code), f.reason)),
                ));
            }
            Some(Ok(Message::Text(t))) => {
                return Err(ConnError::Decode(format!("unexpected text frame {t:?}")));
            }
            Some(Ok(_)) => continue,
        }
    }
}

/// Closes a connection politely, ignoring errors (the server may be gone already).
pub async fn close(mut ws: Ws) {
    let _ = tokio::time::timeout(Duration::from_secs(2), ws.close(None)).await;
}

/// Capacity of a [`Client`]'s request queue; `request` waits while it is full.
const CLIENT_QUEUE: usize = 256;

struct Outgoing {
    msg: ClientMessage,
    reply: oneshot::Sender<ServerMessage>,
}

/// A connection shared by many tasks: each `request` gets its own `req`, the reply is routed
/// back by it. Used for the scenario, the service that creates guild resources, and the final
/// audit; bots own their socket directly (no extra task per bot).
#[derive(Debug)]
pub struct Client {
    queue: mpsc::Sender<Outgoing>,
    next_req: AtomicU64,
    pub welcome: Welcome,
    /// How long one request may wait for its reply.
    pub timeout: Duration,
}

impl Client {
    pub async fn connect(base: &str, token: &str) -> Result<Self, ConnError> {
        let (ws, welcome) = connect(base, token).await?;
        let (queue, rx) = mpsc::channel(CLIENT_QUEUE);
        tokio::spawn(client_loop(ws, rx));
        Ok(Self {
            queue,
            next_req: AtomicU64::new(1),
            welcome,
            timeout: Duration::from_secs(30),
        })
    }

    /// Sends the message `build(req)` and waits for the reply carrying that `req`.
    pub async fn request(
        &self,
        build: impl FnOnce(RequestId) -> ClientMessage,
    ) -> Result<ServerMessage, ConnError> {
        let req = self.next_req.fetch_add(1, Ordering::Relaxed);
        let (reply, rx) = oneshot::channel();
        self.queue
            .send(Outgoing {
                msg: build(req),
                reply,
            })
            .await
            .map_err(|_| ConnError::Closed(None))?;
        match tokio::time::timeout(self.timeout, rx).await {
            Err(_) => Err(ConnError::Timeout),
            Ok(Err(_)) => Err(ConnError::Closed(None)),
            Ok(Ok(msg)) => Ok(msg),
        }
    }
}

/// Owns the socket of a [`Client`]: writes queued requests, routes replies by `req`. Ends when
/// every handle is dropped (and closes the socket) or when the server closes it (pending
/// requests then see `Closed`).
async fn client_loop(mut ws: Ws, mut rx: mpsc::Receiver<Outgoing>) {
    let mut waiting: HashMap<RequestId, oneshot::Sender<ServerMessage>> = HashMap::new();
    loop {
        tokio::select! {
            out = rx.recv() => match out {
                None => break,
                Some(Outgoing { msg, reply }) => {
                    waiting.retain(|_, tx| !tx.is_closed());
                    waiting.insert(msg.req(), reply);
                    if send(&mut ws, &msg).await.is_err() {
                        return;
                    }
                }
            },
            msg = recv(&mut ws) => match msg {
                Err(_) => return,
                Ok(msg) => {
                    if let Some(req) = msg.req()
                        && let Some(tx) = waiting.remove(&req)
                    {
                        let _ = tx.send(msg);
                    }
                }
            },
        }
    }
    close(ws).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_endpoint_adds_the_version_path_once() {
        assert_eq!(
            endpoint("ws://127.0.0.1:7350", "t"),
            "ws://127.0.0.1:7350/v1?token=t"
        );
        assert_eq!(endpoint("ws://h:1/v1/", "t"), "ws://h:1/v1?token=t");
    }
}
