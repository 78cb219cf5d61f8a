//! One WebSocket to a Warden server, owned by one task: connect with a token, read `welcome`, send
//! and receive protocol messages. [`Client`](crate::Client) runs one of these in its background
//! task; a program that wants no task and no channel per connection (a load generator holding ten
//! thousand of them) can drive one itself.

use crate::config::{ClientConfig, jitter};
use crate::error::ClientError;
use futures::{SinkExt, StreamExt};
use std::time::Duration;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::{self, Bytes, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use warden_protocol::{
    ClientMessage, CloseCode, ErrorCode, Limits, PROTOCOL_VERSION, PlayerId, Role, ServerMessage,
    Timestamp,
};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// What the server said in `welcome`, the first message of every session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Welcome {
    /// The protocol version the server speaks (this crate speaks
    /// [`PROTOCOL_VERSION`](warden_protocol::PROTOCOL_VERSION) and refuses any other).
    pub protocol: u32,
    /// Who the token says this session is.
    pub player: PlayerId,
    /// What the token allows.
    pub role: Role,
    /// The server's clock when the session opened.
    pub server_time: Timestamp,
    /// The limits the server enforces on this session.
    pub limits: Limits,
}

/// One open, welcomed WebSocket to a Warden server. No background task: the owner sends and
/// receives; nothing is matched, retried or resumed (see [`Client`](crate::Client) for that).
pub struct Connection {
    ws: Ws,
    welcome: Welcome,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("welcome", &self.welcome)
            .finish_non_exhaustive()
    }
}

/// The WebSocket URL for a base URL: `ws://host:port` (or with a trailing `/`) becomes
/// `ws://host:port/v1`; a URL with a path is kept as it is.
pub(crate) fn endpoint(url: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let base = base.trim_end_matches('/');
    let after_scheme = base.split_once("://").map_or(base, |(_, rest)| rest);
    let mut out = base.to_owned();
    if !after_scheme.contains('/') {
        out.push_str("/v1");
    }
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    out
}

/// `url` without its query string, for error messages (a query may hold a token).
fn without_query(url: &str) -> String {
    url.split_once('?').map_or(url, |(b, _)| b).to_owned()
}

/// The JSON body of a refused upgrade.
#[derive(serde::Deserialize)]
struct RefusalBody {
    code: String,
    #[serde(default)]
    message: Option<String>,
}

fn refused_upgrade(status: u16, body: Option<&[u8]>) -> ClientError {
    let parsed = body.and_then(|b| serde_json::from_slice::<RefusalBody>(b).ok());
    let (code, message) = match parsed {
        Some(b) => (
            serde_json::from_value::<ErrorCode>(serde_json::Value::String(b.code)).ok(),
            b.message,
        ),
        None => (None, None),
    };
    ClientError::Upgrade {
        status,
        code,
        message,
    }
}

impl Connection {
    /// Connects to `url` (`ws://host:port`; `/v1` is added when there is no path) with `token`,
    /// with the default [`ClientConfig`], and reads `welcome`.
    pub async fn connect(url: &str, token: &str) -> Result<Self, ClientError> {
        Self::connect_with(url, token, &ClientConfig::default()).await
    }

    /// Connects with `config` and reads `welcome`. The token travels in the
    /// `Authorization: Bearer` header, so it stays out of URLs and logs.
    pub async fn connect_with(
        url: &str,
        token: &str,
        config: &ClientConfig,
    ) -> Result<Self, ClientError> {
        let target = endpoint(url);
        let connect_error =
            |source: Box<dyn std::error::Error + Send + Sync>| ClientError::Connect {
                url: without_query(&target),
                source,
            };
        let mut request = target
            .as_str()
            .into_client_request()
            .map_err(|e| connect_error(Box::new(e)))?;
        let bearer = HeaderValue::from_str(&format!("Bearer {token}"))
            .map_err(|e| connect_error(Box::new(e)))?;
        request.headers_mut().insert("authorization", bearer);
        let mut ws_config = WebSocketConfig::default();
        if let Some(bytes) = config.read_buffer_bytes {
            ws_config = ws_config.read_buffer_size(bytes);
        }
        let attempt = async {
            let (ws, _) =
                tokio_tungstenite::connect_async_with_config(request, Some(ws_config), true)
                    .await
                    .map_err(|e| match e {
                        tungstenite::Error::Http(resp) => {
                            refused_upgrade(resp.status().as_u16(), resp.body().as_deref())
                        }
                        other => connect_error(Box::new(other)),
                    })?;
            Self::welcomed(ws).await
        };
        tokio::time::timeout(config.connect_timeout, attempt)
            .await
            .map_err(|_| ClientError::Timeout(config.connect_timeout))?
    }

    /// Reads the first message, which must be a `welcome` of this protocol version.
    async fn welcomed(mut ws: Ws) -> Result<Self, ClientError> {
        let first = next_frame(&mut ws).await?;
        let msg = warden_protocol::decode::<ServerMessage>(&first)
            .map_err(|e| ClientError::Decode(e.to_string()))?;
        let welcome = match msg {
            ServerMessage::Welcome {
                protocol,
                player,
                role,
                server_time,
                limits,
            } => Welcome {
                protocol,
                player,
                role,
                server_time,
                limits,
            },
            other => {
                return Err(ClientError::Protocol(format!(
                    "expected welcome first, got {}",
                    ServerMessage::TYPES[other.type_index()]
                )));
            }
        };
        let conn = Connection { ws, welcome };
        if conn.welcome.protocol != PROTOCOL_VERSION {
            let protocol = conn.welcome.protocol;
            conn.close().await;
            return Err(ClientError::Protocol(format!(
                "the server speaks protocol {protocol}, this client {PROTOCOL_VERSION}"
            )));
        }
        Ok(conn)
    }

    /// [`connect_with`](Self::connect_with), tried again with a growing pause (100 ms doubling to
    /// 2 s, with jitter) until it succeeds or `window` has passed since the first try: long
    /// enough to ride out a server restart. `on_failure` sees each failed try. An upgrade the
    /// server refused with a 4xx status (a bad or expired token, a wrong path) is not tried again:
    /// waiting does not change the answer.
    pub async fn connect_patiently(
        url: &str,
        token: &str,
        config: &ClientConfig,
        window: Duration,
        mut on_failure: impl FnMut(&ClientError),
    ) -> Result<Self, ClientError> {
        let give_up = tokio::time::Instant::now() + window;
        let mut pause = Duration::from_millis(100);
        loop {
            match Self::connect_with(url, token, config).await {
                Ok(conn) => return Ok(conn),
                Err(e) => {
                    on_failure(&e);
                    let final_answer = matches!(e, ClientError::Upgrade { status, .. } if (400..500).contains(&status));
                    if final_answer || tokio::time::Instant::now() + pause > give_up {
                        return Err(e);
                    }
                    tokio::time::sleep(pause + jitter(pause / 2)).await;
                    pause = (pause * 2).min(Duration::from_secs(2));
                }
            }
        }
    }

    /// What the server said in `welcome`.
    pub fn welcome(&self) -> &Welcome {
        &self.welcome
    }

    /// Sends one message as a binary frame.
    pub async fn send(&mut self, msg: &ClientMessage) -> Result<(), ClientError> {
        self.send_frame(Bytes::from(warden_protocol::encode(msg)))
            .await
    }

    /// Sends a frame already encoded with [`warden_protocol::encode`] (a resend can reuse the
    /// very bytes of the first send).
    pub async fn send_frame(&mut self, frame: Bytes) -> Result<(), ClientError> {
        self.ws.send(Message::Binary(frame)).await.map_err(lost)
    }

    /// Queues a frame without flushing it (several, then one [`flush`](Self::flush)).
    pub(crate) async fn feed_frame(&mut self, frame: Bytes) -> Result<(), ClientError> {
        self.ws.feed(Message::Binary(frame)).await.map_err(lost)
    }

    /// Writes what [`feed_frame`](Self::feed_frame) queued.
    pub(crate) async fn flush(&mut self) -> Result<(), ClientError> {
        self.ws.flush().await.map_err(lost)
    }

    /// The next protocol message. Pings are answered by the WebSocket library and other control
    /// frames skipped; a close frame or the end of the stream is
    /// [`ClientError::Closed`](crate::ClientError::Closed). Cancel-safe: in a `select!`, a
    /// message is never lost.
    pub async fn recv(&mut self) -> Result<ServerMessage, ClientError> {
        let frame = self.recv_frame().await?;
        warden_protocol::decode::<ServerMessage>(&frame)
            .map_err(|e| ClientError::Decode(e.to_string()))
    }

    /// The next binary frame, undecoded (cancel-safe like [`recv`](Self::recv)).
    pub(crate) async fn recv_frame(&mut self) -> Result<Bytes, ClientError> {
        next_frame(&mut self.ws).await
    }

    /// Closes the connection politely (a normal close frame), ignoring errors: the server may be
    /// gone already. Waits at most two seconds.
    pub async fn close(mut self) {
        let _ = tokio::time::timeout(Duration::from_secs(2), self.ws.close(None)).await;
    }
}

/// The next binary frame of `ws`; see [`Connection::recv`].
async fn next_frame(ws: &mut Ws) -> Result<Bytes, ClientError> {
    loop {
        match ws.next().await {
            None => {
                return Err(ClientError::Closed {
                    code: None,
                    reason: "connection lost".into(),
                });
            }
            Some(Err(e)) => return Err(lost(e)),
            Some(Ok(Message::Binary(bytes))) => return Ok(bytes),
            Some(Ok(Message::Close(frame))) => return Err(closed_by(frame)),
            Some(Ok(Message::Text(t))) => {
                return Err(ClientError::Protocol(format!(
                    "unexpected text frame {:?}",
                    t.as_str()
                )));
            }
            Some(Ok(_)) => continue,
        }
    }
}

/// The error for a close frame: its code when it is one of Warden's (else the number joins the
/// reason), and its reason.
fn closed_by(frame: Option<CloseFrame>) -> ClientError {
    match frame {
        Some(f) => {
            let number = u16::from(f.code);
            let code = CloseCode::from_code(number);
            ClientError::Closed {
                code,
                reason: if code.is_some() {
                    f.reason.to_string()
                } else {
                    format!("{number} {}", f.reason).trim_end().to_owned()
                },
            }
        }
        None => ClientError::Closed {
            code: None,
            reason: "closed without a code".into(),
        },
    }
}

/// A failed read or write: the connection is gone.
fn lost(e: tungstenite::Error) -> ClientError {
    ClientError::Closed {
        code: None,
        reason: format!("connection lost: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_endpoint_adds_the_version_path_only_when_there_is_none() {
        // Guards against connecting to `/` twice-versioned or unversioned URLs by accident.
        assert_eq!(endpoint("ws://127.0.0.1:7350"), "ws://127.0.0.1:7350/v1");
        assert_eq!(endpoint("ws://h:1/"), "ws://h:1/v1");
        assert_eq!(endpoint("ws://h:1/v1/"), "ws://h:1/v1");
        assert_eq!(endpoint("ws://h:1/game/v1"), "ws://h:1/game/v1");
        assert_eq!(endpoint("ws://h:1?token=t"), "ws://h:1/v1?token=t");
        assert_eq!(without_query("ws://h:1/v1?token=secret"), "ws://h:1/v1");
    }

    #[test]
    fn a_refusal_body_names_its_code_when_it_is_one_of_ours() {
        // Guards the one hint a client gets about why an upgrade failed (e.g. "get a new token").
        let body = br#"{"code":"token_expired","message":"token expired"}"#;
        match refused_upgrade(401, Some(body)) {
            ClientError::Upgrade {
                status: 401,
                code: Some(ErrorCode::TokenExpired),
                message: Some(m),
            } => assert_eq!(m, "token expired"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            refused_upgrade(502, Some(b"<html>bad gateway</html>")),
            ClientError::Upgrade {
                status: 502,
                code: None,
                message: None
            }
        ));
    }
}
