//! The MongoDB side of the test support: where the test server is, a fresh database per test,
//! nodes on it, an nx-27017 a test owns, and a latency proxy.

pub mod proxy;

use std::path::{Path, PathBuf};
use std::process::{Child, Command as Process, Stdio};
use std::sync::Arc;
use std::time::Duration;
use warden_core::node::{Node, NodeConfig};
use warden_core::store::Backend;
use warden_store_mongo::{MongoConfig, MongoStore};

/// How long a MongoDB test waits for something that should happen (a relay tick, a restarted
/// nx-27017) before failing; longer than [`super::PATIENCE`], as nx-27017 can be slow to start.
pub const PATIENCE: Duration = Duration::from_secs(60);

/// The environment variable naming the MongoDB-compatible server the tests use.
pub const URI_VAR: &str = "WARDEN_TEST_MONGODB_URI";

/// The test server's URI. Fails (never skips) when it is not set, saying how to get one.
pub fn test_uri() -> String {
    std::env::var(URI_VAR).unwrap_or_else(|_| {
        panic!(
            "{URI_VAR} is not set: these tests need a MongoDB-compatible server. Run `scripts/test`, \
             which starts one, or start nx-27017 yourself:\n  \
             python3 -m venv .mongo-venv && .mongo-venv/bin/pip install nx-27017==0.8.1 neosqlite==1.17.2\n  \
             .mongo-venv/bin/nx-27017 --db memory --host 127.0.0.1 -p 27118 --pid-file $PWD/.mongo-venv/nx.pid &\n  \
             export {URI_VAR}='mongodb://127.0.0.1:27118/?directConnection=true'"
        )
    })
}

/// A database name no other test uses, so tests run in parallel on one server.
pub fn fresh_db_name(test: &str) -> String {
    let short: String = test
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take(20)
        .collect();
    format!("wt_{short}_{}", uuid::Uuid::now_v7().simple())
}

/// A store (one "node") on a fresh database of the test server.
pub async fn fresh_store(test: &str) -> (Arc<MongoStore>, String) {
    let db = fresh_db_name(test);
    let store = MongoStore::connect_to(&test_uri(), Some(&db), MongoConfig::default())
        .await
        .expect("the test MongoDB is reachable");
    (Arc::new(store), db)
}

/// Another store (a second node) on the database `db`.
pub async fn another_node(db: &str) -> Arc<MongoStore> {
    Arc::new(
        MongoStore::connect_to(&test_uri(), Some(db), MongoConfig::default())
            .await
            .expect("the test MongoDB is reachable"),
    )
}

/// A store (one more node) on the database `db`, reaching the test server through `proxy`.
pub async fn node_behind(proxy: &proxy::Proxy, db: &str) -> Arc<MongoStore> {
    Arc::new(
        MongoStore::connect_to(&proxy.uri(&test_uri()), Some(db), MongoConfig::default())
            .await
            .expect("the test MongoDB is reachable through the proxy"),
    )
}

/// What a node on `store` runs on: the store for the log and the read model, and the relay that
/// brings other nodes' commits.
pub fn backend(store: Arc<MongoStore>) -> Backend {
    store.backend()
}

/// A node with the default configuration (the real clock) on `store`.
pub fn node_on(store: Arc<MongoStore>) -> Node {
    Node::start(&backend(store), NodeConfig::default())
}

/// A store on the MongoDB at `uri`, database `db`, with the default configuration.
pub async fn store_at(uri: &str, db: &str) -> Arc<MongoStore> {
    Arc::new(
        MongoStore::connect_to(uri, Some(db), MongoConfig::default())
            .await
            .expect("the MongoDB is reachable"),
    )
}

/// A TCP port nothing listens on right now (for a server a test starts itself).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind port 0")
        .local_addr()
        .expect("a bound listener has an address")
        .port()
}

/// A latency proxy in front of the test server.
pub async fn proxy_with_rtt(rtt: std::time::Duration) -> proxy::Proxy {
    proxy::Proxy::start(proxy::upstream_of(&test_uri()), rtt).await
}

/// The nx-27017 executable: `WARDEN_TEST_NX27017` (set by `scripts/test`) or `.mongo-venv/bin/`.
pub fn nx_27017() -> PathBuf {
    if let Ok(path) = std::env::var("WARDEN_TEST_NX27017") {
        return path.into();
    }
    let local = Path::new(env!("CARGO_MANIFEST_DIR")).join(".mongo-venv/bin/nx-27017");
    assert!(
        local.exists(),
        "nx-27017 not found: run `scripts/test`, or set WARDEN_TEST_NX27017 to its path \
         (pip install nx-27017==0.8.1 neosqlite==1.17.2 in .mongo-venv)"
    );
    local
}

/// An nx-27017 process a test owns (to stop and restart it on the same data); killed when
/// dropped.
pub struct OwnMongo {
    child: Child,
}

impl OwnMongo {
    /// Starts nx-27017 on `port` with its data in `data_dir`, and waits until it listens.
    pub fn start(port: u16, data_dir: &Path) -> Self {
        let child = Process::new(nx_27017())
            .arg("--data-dir")
            .arg(data_dir)
            .args(["--host", "127.0.0.1", "-p", &port.to_string(), "--pid-file"])
            .arg(data_dir.join("nx.pid"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nx-27017 starts");
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "nx-27017 never listened"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Self { child }
    }

    /// Kills the server abruptly, as a crash or a lost machine would.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for OwnMongo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
