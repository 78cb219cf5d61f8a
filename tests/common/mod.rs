//! Shared test harness: a real server on port 0 (embedded store in a temporary directory) and a
//! small WebSocket client that sends requests, awaits replies by `req`, and collects updates.
#![allow(dead_code)]

use futures::{SinkExt, StreamExt};
use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use tokio_util::sync::CancellationToken;
use warden::auth::TokenKeys;
use warden::clock::ManualClock;
use warden::domain::{ClientResource, CommandId, PlayerId, ResourceId, Role};
use warden::net::{NetConfig, NetStats, Server};
use warden::node::{Node, NodeConfig};
use warden::protocol::{self, ClientMessage, ServerMessage};
use warden::store::Backend;
use warden::store::embedded::EmbeddedStore;

/// How long a test waits for a message before declaring the server hung. A guard against a test
/// hanging forever, not a performance assertion: it is generous on purpose.
pub const PATIENCE: Duration = Duration::from_secs(30);

/// A server on `127.0.0.1:0` with its own data directory.
pub struct TestServer {
    pub addr: std::net::SocketAddr,
    pub keys: TokenKeys,
    pub stats: Arc<NetStats>,
    pub node: Arc<Node>,
    pub dir: PathBuf,
    /// The node's clock: fixed unless a test moves it, so amounts are exact (no regeneration).
    pub clock: ManualClock,
    shutdown: CancellationToken,
    task: JoinHandle<()>,
    pub store: Arc<EmbeddedStore>,
    /// Keeps the temporary directory alive (None when the caller owns the directory).
    _temp: Option<Arc<tempfile::TempDir>>,
}

impl TestServer {
    pub async fn start() -> Self {
        Self::start_with(NetConfig::default()).await
    }

    pub async fn start_with(config: NetConfig) -> Self {
        let temp = Arc::new(tempfile::tempdir().expect("temp dir"));
        let dir = temp.path().to_owned();
        Self::start_in(&dir, config, Some(temp)).await
    }

    /// A server on the store in `dir` (which outlives it), e.g. to restart on the same data.
    pub async fn start_in(
        dir: &Path,
        config: NetConfig,
        temp: Option<Arc<tempfile::TempDir>>,
    ) -> Self {
        let store = Arc::new(EmbeddedStore::open(dir).expect("open store"));
        let keys = TokenKeys::from_secret(b"test-secret");
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64;
        let clock = ManualClock::at(now);
        let node_config = NodeConfig {
            clock: Arc::new(clock.clone()),
            ..NodeConfig::default()
        };
        let node = Arc::new(Node::start(
            &Backend::local(store.clone(), store.clone()),
            node_config,
        ));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let server = Server::new(listener, node.clone(), keys.clone(), config);
        let addr = server.local_addr().unwrap();
        let stats = server.stats();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn({
            let shutdown = shutdown.clone();
            async move {
                server.run(shutdown).await.expect("server runs");
            }
        });
        Self {
            addr,
            keys,
            stats,
            node,
            dir: dir.to_owned(),
            clock,
            shutdown,
            task,
            store,
            _temp: temp,
        }
    }

    /// The token whose cancellation starts this server's graceful shutdown (as [`stop`] does).
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    pub fn token(&self, player: &str, role: Role) -> String {
        self.keys.mint(player, role, 3600)
    }

    pub fn url(&self, token: &str) -> String {
        format!("ws://{}/v1?token={token}", self.addr)
    }

    pub async fn connect(&self, player: &str, role: Role) -> Client {
        Client::connect(&self.url(&self.token(player, role)))
            .await
            .expect("connect")
    }

    /// Graceful shutdown as `warden serve` does it: stop serving, then stop the node.
    pub async fn stop(self) {
        self.shutdown.cancel();
        self.task.await.expect("server task");
        let node = Arc::into_inner(self.node).expect("no session holds the node after run()");
        node.shutdown().await;
        drop(self.store);
    }
}

/// A test client: one WebSocket connection.
pub struct Client {
    pub ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    pub welcome: ServerMessage,
    next_req: u64,
    /// Messages received while waiting for something else (updates, other replies).
    pending: VecDeque<ServerMessage>,
}

impl Client {
    /// Connects and reads `welcome`.
    pub async fn connect(url: &str) -> Result<Client, tungstenite::Error> {
        let (ws, _) = tokio_tungstenite::connect_async(url).await?;
        let mut client = Client {
            ws,
            welcome: ServerMessage::Pong {
                req: 0,
                server_time: warden::domain::Timestamp(0),
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
        self.send_raw(protocol::encode(msg)).await;
    }

    pub async fn send_raw(&mut self, bytes: Vec<u8>) {
        self.ws
            .send(Message::Binary(bytes.into()))
            .await
            .expect("send");
    }

    /// Sends raw bytes and returns the error the server answers with: (req, code). Updates that
    /// arrive meanwhile are skipped; anything else fails the test.
    pub async fn refusal(&mut self, bytes: Vec<u8>) -> (Option<u64>, String) {
        self.send_raw(bytes).await;
        loop {
            match self.recv().await.expect("session stays open") {
                ServerMessage::Error { req, code, .. } => return (req, code.to_string()),
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
                    return Some(protocol::decode(&bytes).expect("server messages decode"));
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

    pub async fn create(&mut self, resource_type: &str) -> ServerMessage {
        let resource_type = resource_type.to_owned();
        self.request(|req| {
            ClientMessage::Create(warden::protocol::Create {
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
            ClientMessage::Allocate(warden::protocol::Allocate {
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
            ClientMessage::Add(warden::protocol::Add {
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
            ClientMessage::Lock(warden::protocol::Lock {
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
            ClientMessage::Unlock(warden::protocol::Unlock {
                req,
                command_id: CommandId::new(),
                resource_id: id,
            })
        })
        .await
    }

    pub async fn get(&mut self, id: ResourceId) -> ServerMessage {
        self.request(|req| {
            ClientMessage::Get(warden::protocol::Get {
                req,
                resource_id: id,
            })
        })
        .await
    }

    pub async fn list(&mut self, owner: Option<&str>) -> ServerMessage {
        let owner = owner.map(PlayerId::new);
        self.request(|req| ClientMessage::List(warden::protocol::List { req, owner }))
            .await
    }

    pub async fn history(&mut self, id: ResourceId) -> ServerMessage {
        self.request(|req| {
            ClientMessage::History(warden::protocol::History {
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
            ClientMessage::Subscribe(warden::protocol::Subscribe {
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
            ClientMessage::Subscribe(warden::protocol::Subscribe {
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
pub fn error_code(msg: &ServerMessage) -> &'static str {
    match msg {
        ServerMessage::Error { code, .. } => code.as_str(),
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
