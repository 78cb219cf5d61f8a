//! The WebSocket test client: one connection that sends requests, awaits the reply carrying each
//! one's `req`, and keeps whatever else arrives (updates, other replies) for later.

use super::PATIENCE;
use futures::{SinkExt, StreamExt};
use std::collections::VecDeque;
use std::net::{Shutdown, SocketAddr};
use std::sync::{Arc, Mutex, Weak};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use warden_core::domain::{ClientResource, CommandId, PlayerId, ResourceId};
use warden_protocol::ErrorCode;
use warden_protocol::{self, ClientMessage, ServerMessage};

/// The sockets of the clients connected to each server address, so that the server's teardown
/// can disconnect the ones still open ([`disconnect_all`]). Weak: a dropped client's socket
/// closes as usual.
static OPEN: Mutex<Vec<(SocketAddr, Weak<std::net::TcpStream>)>> = Mutex::new(Vec::new());

/// Disconnects every test client still connected to `server`, as a client that goes away would.
///
/// A test client reads only when the test asks, so it never answers a close frame; a graceful
/// shutdown would wait `close_timeout` (2 s) for each such session before giving up on it.
pub fn disconnect_all(server: SocketAddr) {
    let mut open = OPEN.lock().expect("no test panicked holding the list");
    open.retain(|(addr, socket)| {
        if *addr != server {
            return socket.strong_count() > 0;
        }
        if let Some(socket) = socket.upgrade() {
            let _ = socket.shutdown(Shutdown::Both);
        }
        false
    });
}

/// A test client: one WebSocket connection.
pub struct Client {
    pub ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    pub welcome: ServerMessage,
    next_req: u64,
    /// Messages received while waiting for something else (updates, other replies).
    pending: VecDeque<ServerMessage>,
    /// A second handle to the socket, for [`disconnect_all`]; closed with the client.
    _socket: Arc<std::net::TcpStream>,
}

impl Client {
    /// Connects and reads `welcome`.
    pub async fn connect(url: &str) -> Result<Client, tungstenite::Error> {
        // What `connect_async` does, keeping a second handle to the socket.
        let request = url.into_client_request()?;
        let uri = request.uri();
        let host = uri.host().unwrap_or_default();
        let tcp = TcpStream::connect((host, uri.port_u16().unwrap_or(80))).await?;
        let addr = tcp.peer_addr()?;
        let std = tcp.into_std()?;
        let socket = Arc::new(std.try_clone()?);
        let tcp = TcpStream::from_std(std)?;
        let (ws, _) = tokio_tungstenite::client_async(request, MaybeTlsStream::Plain(tcp)).await?;
        OPEN.lock()
            .expect("no test panicked holding the list")
            .push((addr, Arc::downgrade(&socket)));
        let mut client = Client {
            _socket: socket,
            ws,
            welcome: ServerMessage::Pong {
                req: 0,
                server_time: warden_core::domain::Timestamp(0),
            },
            next_req: 1,
            pending: VecDeque::new(),
        };
        let welcome = client.recv().await.expect("welcome");
        assert!(
            matches!(welcome, ServerMessage::Welcome { .. }),
            "first message is welcome, got {welcome:?}"
        );
        client.welcome = welcome;
        Ok(client)
    }

    pub fn next_req(&mut self) -> u64 {
        let req = self.next_req;
        self.next_req += 1;
        req
    }

    pub async fn send(&mut self, msg: &ClientMessage) {
        self.send_raw(warden_protocol::encode(msg)).await;
    }

    pub async fn send_raw(&mut self, bytes: Vec<u8>) {
        self.ws
            .send(Message::Binary(bytes.into()))
            .await
            .expect("send");
    }

    /// Sends raw bytes and returns the error the server answers with: (req, code). Updates that
    /// arrive meanwhile are skipped; anything else fails the test.
    pub async fn refusal(&mut self, bytes: Vec<u8>) -> (Option<u64>, ErrorCode) {
        self.send_raw(bytes).await;
        loop {
            match self.recv().await.expect("session stays open") {
                ServerMessage::Error { req, code, .. } => return (req, code),
                ServerMessage::Update { .. } => continue,
                other => panic!("expected an error, got {other:?}"),
            }
        }
    }

    /// The next protocol message from the socket (not the pending queue); `None` once closed.
    async fn read(&mut self) -> Option<ServerMessage> {
        loop {
            let frame = tokio::time::timeout(PATIENCE, self.ws.next())
                .await
                .expect("server answered in time");
            match frame {
                Some(Ok(Message::Binary(bytes))) => {
                    return Some(warden_protocol::decode(&bytes).expect("server messages decode"));
                }
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return None,
                Some(Ok(_)) => continue,
            }
        }
    }

    /// The next message, pending ones first.
    pub async fn recv(&mut self) -> Option<ServerMessage> {
        match self.pending.pop_front() {
            Some(msg) => Some(msg),
            None => self.read().await,
        }
    }

    /// Sends a request built with a fresh `req` and waits for the reply carrying that `req`,
    /// keeping everything else for later.
    pub async fn request(&mut self, build: impl FnOnce(u64) -> ClientMessage) -> ServerMessage {
        let req = self.next_req();
        self.send(&build(req)).await;
        self.reply_to(req).await
    }

    /// Waits for the reply to `req`.
    pub async fn reply_to(&mut self, req: u64) -> ServerMessage {
        if let Some(i) = self.pending.iter().position(|m| m.req() == Some(req)) {
            return self.pending.remove(i).unwrap();
        }
        loop {
            let msg = self
                .read()
                .await
                .expect("connection open while awaiting a reply");
            if msg.req() == Some(req) {
                return msg;
            }
            self.pending.push_back(msg);
        }
    }

    /// The next `update` (other messages are kept).
    pub async fn next_update(&mut self) -> Option<ServerMessage> {
        if let Some(i) = self
            .pending
            .iter()
            .position(|m| matches!(m, ServerMessage::Update { .. }))
        {
            return self.pending.remove(i);
        }
        loop {
            let msg = self.read().await?;
            if matches!(msg, ServerMessage::Update { .. }) {
                return Some(msg);
            }
            self.pending.push_back(msg);
        }
    }

    /// Reads until the server closes; returns the close frame if it sent one.
    pub async fn closed(&mut self) -> Option<CloseFrame> {
        loop {
            let frame = tokio::time::timeout(PATIENCE, self.ws.next())
                .await
                .expect("server closed in time");
            match frame {
                Some(Ok(Message::Close(frame))) => return frame,
                Some(Ok(_)) => continue,
                None | Some(Err(_)) => return None,
            }
        }
    }

    /// Creates the caller's wallet of `resource_type` (or finds it): for `wood`, held many times
    /// per owner, a new one under a fresh name.
    pub async fn create(&mut self, resource_type: &str) -> ServerMessage {
        let name = (resource_type == "wood").then(|| crate::fresh_name(resource_type));
        let resource_type = resource_type.to_owned();
        self.request(|req| {
            ClientMessage::Create(warden_protocol::Create {
                name,
                req,
                command_id: CommandId::new(),
                resource_type,
                owner: None,
                params: None,
            })
        })
        .await
    }

    /// Creates a resource and returns its id (panics if refused).
    pub async fn create_id(&mut self, resource_type: &str) -> ResourceId {
        match self.create(resource_type).await {
            ServerMessage::Applied { resource_id, .. } => resource_id,
            other => panic!("create refused: {other:?}"),
        }
    }

    pub async fn allocate(&mut self, id: ResourceId, amount: u64) -> ServerMessage {
        self.request(|req| {
            ClientMessage::Allocate(warden_protocol::Allocate {
                req,
                command_id: CommandId::new(),
                resource_id: id,
                amount,
                reason: "test".into(),
            })
        })
        .await
    }

    pub async fn add(&mut self, id: ResourceId, amount: u64) -> ServerMessage {
        self.request(|req| {
            ClientMessage::Add(warden_protocol::Add {
                req,
                command_id: CommandId::new(),
                resource_id: id,
                amount,
                reason: "test".into(),
            })
        })
        .await
    }

    pub async fn lock(&mut self, id: ResourceId, reason: &str, duration_ms: u64) -> ServerMessage {
        let reason = reason.to_owned();
        self.request(|req| {
            ClientMessage::Lock(warden_protocol::Lock {
                req,
                command_id: CommandId::new(),
                resource_id: id,
                reason,
                duration_ms,
            })
        })
        .await
    }

    pub async fn unlock(&mut self, id: ResourceId) -> ServerMessage {
        self.request(|req| {
            ClientMessage::Unlock(warden_protocol::Unlock {
                req,
                command_id: CommandId::new(),
                resource_id: id,
            })
        })
        .await
    }

    pub async fn get(&mut self, id: ResourceId) -> ServerMessage {
        self.request(|req| {
            ClientMessage::Get(warden_protocol::Get {
                req,
                resource_id: id,
            })
        })
        .await
    }

    pub async fn list(&mut self, owner: Option<&str>) -> ServerMessage {
        let owner = owner.map(PlayerId::new);
        self.request(|req| ClientMessage::List(warden_protocol::List { req, owner }))
            .await
    }

    pub async fn history(&mut self, id: ResourceId) -> ServerMessage {
        self.request(|req| {
            ClientMessage::History(warden_protocol::History {
                req,
                resource_id: id,
                after_version: 0,
                limit: None,
            })
        })
        .await
    }

    pub async fn subscribe(&mut self, id: ResourceId, from_version: Option<u64>) -> ServerMessage {
        self.request(|req| {
            ClientMessage::Subscribe(warden_protocol::Subscribe {
                req,
                resource_id: Some(id),
                owner: None,
                from_version,
            })
        })
        .await
    }

    pub async fn subscribe_owner(&mut self, owner: &str) -> ServerMessage {
        let owner = Some(PlayerId::new(owner));
        self.request(|req| {
            ClientMessage::Subscribe(warden_protocol::Subscribe {
                req,
                resource_id: None,
                owner,
                from_version: None,
            })
        })
        .await
    }
}

/// The error code of a reply, or a panic naming what came instead.
pub fn error_code(msg: &ServerMessage) -> ErrorCode {
    match msg {
        ServerMessage::Error { code, .. } => *code,
        other => panic!("expected an error, got {other:?}"),
    }
}

/// The resource of an `applied` reply, or a panic naming what came instead.
pub fn applied(msg: &ServerMessage) -> &ClientResource {
    match msg {
        ServerMessage::Applied { resource, .. } => resource,
        other => panic!("expected applied, got {other:?}"),
    }
}
