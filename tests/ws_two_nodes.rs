//! Two Warden servers sharing one MongoDB, over the real WebSocket protocol. Guards against a
//! subscriber on one node missing, repeating or reordering changes committed through the other,
//! and against lost or doubled writes when clients of both nodes write one resource. Also guards
//! against `warden serve` starting (or hanging) when its MongoDB is unreachable.
#![cfg(feature = "mongodb")]

mod common;
mod mongo_support;

use common::{Client, PATIENCE, applied};
use std::sync::Arc;
use tokio_util::sync::CancellationToken;
use warden::auth::TokenKeys;
use warden::domain::{CommandId, ResourceId, Role};
use warden::net::{NetConfig, Server};
use warden::node::{Node, NodeConfig};
use warden::protocol::{ClientMessage, ServerMessage};
use warden::store::Backend;
use warden::store::mongo::MongoStore;

/// One `warden` server on port 0 on a MongoDB database.
struct MongoServer {
    addr: std::net::SocketAddr,
    node: Arc<Node>,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl MongoServer {
    async fn start(store: Arc<MongoStore>, keys: &TokenKeys) -> Self {
        let backend = Backend {
            events: store.clone(),
            read: store.clone(),
            mongo: Some(store),
        };
        let node = Arc::new(Node::start(&backend, NodeConfig::default()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let server = Server::new(listener, node.clone(), keys.clone(), NetConfig::default());
        let addr = server.local_addr().unwrap();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn({
            let shutdown = shutdown.clone();
            async move { server.run(shutdown).await.expect("server runs") }
        });
        Self {
            addr,
            node,
            shutdown,
            task,
        }
    }

    async fn connect(&self, keys: &TokenKeys, player: &str, role: Role) -> Client {
        let url = format!(
            "ws://{}/v1?token={}",
            self.addr,
            keys.mint(player, role, 3600)
        );
        Client::connect(&url).await.expect("connect")
    }

    async fn stop(self) {
        self.shutdown.cancel();
        self.task.await.unwrap();
        // A session's subscription tasks may still be letting go of the node for a moment.
        tokio::time::timeout(PATIENCE, async {
            while Arc::strong_count(&self.node) > 1 {
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
        })
        .await
        .expect("every session lets go of the node");
        Arc::into_inner(self.node)
            .expect("no session holds the node")
            .shutdown()
            .await;
    }
}

/// Adds 1 with one command id, retrying it while the answer is `conflict` (as a client should).
async fn add_one(client: &mut Client, id: ResourceId) -> u64 {
    let command_id = CommandId::new();
    loop {
        let reply = client
            .request(|req| {
                ClientMessage::Add(warden::protocol::Add {
                    req,
                    command_id,
                    resource_id: id,
                    amount: 1,
                    reason: "two nodes".into(),
                })
            })
            .await;
        match &reply {
            ServerMessage::Error { code, .. } if code == "conflict" => continue,
            _ => return applied(&reply).version,
        }
    }
}

/// Reads updates of `id` until `last`, checking each starts where the previous ended.
async fn follow(client: &mut Client, id: ResourceId, from: u64, last: u64) -> Vec<u64> {
    let mut at = from;
    let mut seen = Vec::new();
    while at < last {
        let update = tokio::time::timeout(PATIENCE, client.next_update())
            .await
            .unwrap_or_else(|_| panic!("no update after v{at} (waiting for v{last})"))
            .expect("connection open");
        let ServerMessage::Update {
            resource_id,
            base_version,
            version,
            resource,
            ..
        } = update
        else {
            unreachable!("next_update returns updates")
        };
        assert_eq!(resource_id, id);
        assert_eq!(
            base_version, at,
            "no gap and no repeat: each update starts where the last ended"
        );
        assert_eq!(resource.version, version);
        at = version;
        seen.push(version);
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_subscriber_on_one_node_sees_writes_through_both_in_order() {
    let (store_a, db) = mongo_support::fresh_store("ws_two_nodes").await;
    let store_b = mongo_support::another_node(&db).await;
    writes_through_both_nodes_reach_both_subscribers_in_order(store_a, store_b).await;
}

/// The same with MongoDB 2 ms away from both nodes (a latency proxy in between), where the
/// MongoDB writer commits many commands per round trip: still nothing lost, doubled or reordered.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn behind_a_2ms_round_trip_writes_through_both_nodes_reach_subscribers_in_order() {
    let proxy = mongo_support::proxy_with_rtt(std::time::Duration::from_millis(2)).await;
    let db = mongo_support::fresh_db_name("ws_two_nodes_rtt");
    let store_a = mongo_support::node_behind(&proxy, &db).await;
    let store_b = mongo_support::node_behind(&proxy, &db).await;
    writes_through_both_nodes_reach_both_subscribers_in_order(store_a, store_b).await;
}

async fn writes_through_both_nodes_reach_both_subscribers_in_order(
    store_a: Arc<MongoStore>,
    store_b: Arc<MongoStore>,
) {
    // Given two servers on one MongoDB database, a resource alice created through server A, and
    // alice subscribed to it on server A and a spectator subscribed on server B,
    let keys = TokenKeys::from_secret(b"two-node-secret");
    let a = MongoServer::start(store_a, &keys).await;
    let b = MongoServer::start(store_b, &keys).await;
    let mut owner = a.connect(&keys, "alice", Role::Player).await;
    let id = owner.create_id("wood").await;
    let ServerMessage::Subscribed { resources, .. } = owner.subscribe(id, None).await else {
        panic!("subscribe refused")
    };
    let from_a = resources[0].version;
    let mut watcher = b.connect(&keys, "watcher", Role::Spectator).await;
    let ServerMessage::Subscribed { resources, .. } = watcher.subscribe(id, None).await else {
        panic!("subscribe refused")
    };
    let from_b = resources[0].version;

    // When two clients of each server add 1, ten times each, to that resource,
    const ADDS: usize = 10;
    let mut writers = Vec::new();
    for server in [&a, &b, &a, &b] {
        let mut client = server.connect(&keys, "alice", Role::Player).await;
        writers.push(tokio::spawn(async move {
            for _ in 0..ADDS {
                add_one(&mut client, id).await;
            }
        }));
    }
    for w in writers {
        w.await.unwrap();
    }
    let last = 1 + 4 * ADDS as u64;

    // Then both subscribers see every version up to the last, in order, each exactly once,
    let seen_a = follow(&mut owner, id, from_a, last).await;
    let seen_b = follow(&mut watcher, id, from_b, last).await;
    assert_eq!(seen_a.last(), Some(&last));
    assert_eq!(seen_b.last(), Some(&last));
    // and the resource counts every add once, on both servers.
    for client in [&mut owner, &mut watcher] {
        match client.get(id).await {
            ServerMessage::Resource { resource, .. } => {
                assert_eq!((resource.version, resource.amount), (last, 4 * ADDS as u64))
            }
            other => panic!("get failed: {other:?}"),
        }
    }
    drop((owner, watcher));
    a.stop().await;
    b.stop().await;
}

#[test]
fn serve_exits_with_a_clear_error_when_mongodb_is_unreachable() {
    // Given a port nothing listens on,
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = tempfile::tempdir().unwrap();
    // when `warden serve` is pointed at it,
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_warden"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .args([
            "--mongodb-uri",
            &format!("mongodb://127.0.0.1:{port}/?directConnection=true"),
        ])
        .output()
        .expect("warden runs");
    // then it exits non-zero, saying MongoDB is the problem.
    assert!(
        !out.status.success(),
        "serve must not start without its store"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("MongoDB") && stderr.contains("unreachable"),
        "the error names the cause: {stderr}"
    );
}
