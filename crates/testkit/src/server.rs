//! A real Warden WebSocket server in the test's process, on `127.0.0.1:0`: by default on a
//! [`TestNode`] (embedded store in a temporary directory), or on any node the test built (MongoDB).

use super::client::{Client, disconnect_all};
use super::node::{DataDir, TestNode};
use super::{PATIENCE, wait_for};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use warden_core::clock::{ManualClock, SystemClock};
use warden_core::domain::Role;
use warden_core::node::Node;
use warden_net::auth::TokenKeys;
use warden_net::{NetConfig, NetStats, Server};
use warden_store_embedded::EmbeddedStore;

/// The secret every local server signs its tokens with (client-sim's binary is given it too).
pub const SECRET: &str = "test-secret";

/// The embedded store under a server started on a [`TestNode`].
struct Embedded {
    store: Arc<EmbeddedStore>,
    dir: DataDir,
    clock: ManualClock,
}

/// A server on `127.0.0.1:0`.
pub struct LocalServer {
    pub addr: SocketAddr,
    pub keys: TokenKeys,
    /// The accept loop's counters (of the current listener, after a [`restart`](Self::restart)).
    pub stats: Arc<NetStats>,
    pub node: Arc<Node>,
    config: NetConfig,
    /// Set when the server runs on a [`TestNode`]: its store, directory and clock.
    embedded: Option<Embedded>,
    /// Cancelled to start the graceful shutdown of the current listener.
    shutdown: CancellationToken,
    task: JoinHandle<()>,
}

impl LocalServer {
    /// A server with the default network settings on a fresh embedded store, its clock fixed at
    /// the current time unless a test moves it (so amounts are exact: no regeneration).
    pub async fn start() -> Self {
        Self::start_with(NetConfig::default()).await
    }

    pub async fn start_with(config: NetConfig) -> Self {
        Self::start_in(&DataDir::temp(), config).await
    }

    /// A server on the store in `dir` (e.g. again on the same data after [`stop`](Self::stop)).
    pub async fn start_in(dir: &DataDir, config: NetConfig) -> Self {
        let node = TestNode::reopen(dir.clone(), |_| {});
        node.clock.set(now_ms());
        Self::serve(node, config).await
    }

    /// A server on a fresh embedded store whose node reads the real clock (resources regenerate
    /// as time passes), as a deployed server would.
    pub async fn with_real_clock() -> Self {
        let node = TestNode::embedded_with(|c| c.clock = Arc::new(SystemClock));
        Self::serve(node, NetConfig::default()).await
    }

    /// A server on `node`.
    pub async fn serve(node: TestNode, config: NetConfig) -> Self {
        let TestNode {
            node,
            store,
            backend,
            clock,
            dir,
        } = node;
        drop(backend);
        let embedded = Embedded { store, dir, clock };
        Self::on(Arc::new(node), config, Some(embedded)).await
    }

    /// A server on a node the test built (e.g. on MongoDB).
    pub async fn serve_node(node: Arc<Node>, config: NetConfig) -> Self {
        Self::on(node, config, None).await
    }

    async fn on(node: Arc<Node>, config: NetConfig, embedded: Option<Embedded>) -> Self {
        let keys = TokenKeys::from_secret(SECRET.as_bytes());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind port 0");
        let (stats, shutdown, task) = listen(listener, &node, &keys, &config);
        Self {
            addr: stats.1,
            keys,
            stats: stats.0,
            node,
            config,
            embedded,
            shutdown,
            task,
        }
    }

    /// The embedded store under the node.
    pub fn store(&self) -> &Arc<EmbeddedStore> {
        &self.embedded().store
    }

    /// The embedded store's directory.
    pub fn dir(&self) -> &DataDir {
        &self.embedded().dir
    }

    /// The node's clock (fixed unless a test moves it).
    pub fn clock(&self) -> &ManualClock {
        &self.embedded().clock
    }

    fn embedded(&self) -> &Embedded {
        self.embedded
            .as_ref()
            .expect("this server runs on a node the test built, not on a TestNode")
    }

    /// The base URL client-sim takes (`ws://host:port`).
    pub fn base_url(&self) -> String {
        format!("ws://{}", self.addr)
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

    /// The server goes away (every session closed, the node kept) and, after `down_for`, listens
    /// again on the same address: a restart as clients see it.
    pub async fn restart(&mut self, down_for: Duration) {
        self.shutdown.cancel();
        (&mut self.task).await.expect("server task");
        tokio::time::sleep(down_for).await;
        let listener = tokio::net::TcpListener::bind(self.addr)
            .await
            .expect("bind the same address again");
        let (stats, shutdown, task) = listen(listener, &self.node, &self.keys, &self.config);
        (self.stats, self.shutdown, self.task) = (stats.0, shutdown, task);
    }

    /// Ends the test's server: disconnects the test clients still connected to it (they would
    /// not answer its close frame: see [`client::disconnect_all`]), then
    /// [`stop_with_clients`](Self::stop_with_clients).
    ///
    /// [`client::disconnect_all`]: super::client::disconnect_all
    pub async fn stop(self) {
        disconnect_all(self.addr);
        self.stop_with_clients().await;
    }

    /// Graceful shutdown as `warden serve` does it, with the clients still connected: stop
    /// serving (sessions answer what is in flight and close with 1001), then stop the node, then
    /// let go of the store.
    pub async fn stop_with_clients(self) {
        self.shutdown.cancel();
        self.task.await.expect("server task");
        // A session's subscription tasks may still be letting go of the node for a moment.
        wait_for("every session to let go of the node", PATIENCE, || {
            Arc::strong_count(&self.node) == 1
        })
        .await;
        let node = Arc::into_inner(self.node).expect("no session holds the node");
        node.shutdown().await;
        // The last handle closes the store (a test may still hold one, e.g. in a registry of its
        // own, which closes it when dropped).
        drop(self.embedded);
    }
}

/// Serves `listener` in a task; its stats and address, its shutdown token and the task.
fn listen(
    listener: tokio::net::TcpListener,
    node: &Arc<Node>,
    keys: &TokenKeys,
    config: &NetConfig,
) -> (
    (Arc<NetStats>, SocketAddr),
    CancellationToken,
    JoinHandle<()>,
) {
    let server = Server::new(listener, node.clone(), keys.clone(), config.clone());
    let addr = server
        .local_addr()
        .expect("a bound listener has an address");
    let stats = server.stats();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn({
        let shutdown = shutdown.clone();
        async move { server.run(shutdown).await.expect("server runs") }
    });
    ((stats, addr), shutdown, task)
}

/// The current time in Unix milliseconds.
fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_millis() as i64
}
