//! Two Warden servers sharing one MongoDB, over the real WebSocket protocol. Guards against a
//! subscriber on one node missing, repeating or reordering changes committed through the other,
//! and against lost or doubled writes when clients of both nodes write one resource. Also guards
//! against `warden serve` starting (or hanging) when its MongoDB is unreachable.
#![cfg(feature = "mongodb")]

use warden_testkit as support;

use std::sync::Arc;
use support::mongo::{self, node_on};
use support::{Client, LocalServer, PATIENCE, applied};
use warden_core::domain::{CommandId, ResourceId, Role};
use warden_net::NetConfig;
use warden_protocol::ErrorCode;
use warden_protocol::{ClientMessage, ServerMessage};
use warden_store_mongo::MongoStore;

/// Adds 1 with one command id, retrying it while the answer is `conflict` or `unavailable`, as
/// `docs/protocol.md` tells a client to (same command id, so a retry of a command that did commit
/// is answered with that commit, never applied twice). nx-27017 sometimes fails an insert under
/// concurrent writers ("Failed to get last row id."), which Warden reports as `unavailable`.
async fn add_one(client: &mut Client, id: ResourceId) -> u64 {
    const ATTEMPTS: usize = 50;
    let command_id = CommandId::new();
    for _ in 0..ATTEMPTS {
        let reply = client
            .request(|req| {
                ClientMessage::Add(warden_protocol::Add {
                    req,
                    command_id,
                    resource_id: id,
                    amount: 1,
                    reason: "two nodes".into(),
                })
            })
            .await;
        match &reply {
            ServerMessage::Error { code, .. } if *code == ErrorCode::Conflict => continue,
            ServerMessage::Error { code, .. } if *code == ErrorCode::Unavailable => {
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
            _ => return applied(&reply).version,
        }
    }
    panic!("add {command_id:?} not applied after {ATTEMPTS} attempts")
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
    let (store_a, db) = mongo::fresh_store("ws_two_nodes").await;
    let store_b = mongo::another_node(&db).await;
    writes_through_both_nodes_reach_both_subscribers_in_order(store_a, store_b).await;
}

/// The same with MongoDB 2 ms away from both nodes (a latency proxy in between), where the
/// MongoDB writer commits many commands per round trip: still nothing lost, doubled or reordered.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn behind_a_2ms_round_trip_writes_through_both_nodes_reach_subscribers_in_order() {
    let proxy = mongo::proxy_with_rtt(std::time::Duration::from_millis(2)).await;
    let db = mongo::fresh_db_name("ws_two_nodes_rtt");
    let store_a = mongo::node_behind(&proxy, &db).await;
    let store_b = mongo::node_behind(&proxy, &db).await;
    writes_through_both_nodes_reach_both_subscribers_in_order(store_a, store_b).await;
}

async fn writes_through_both_nodes_reach_both_subscribers_in_order(
    store_a: Arc<MongoStore>,
    store_b: Arc<MongoStore>,
) {
    // Given two servers on one MongoDB database, a resource alice created through server A, and
    // alice subscribed to it on server A and a spectator subscribed on server B,
    let a = LocalServer::serve_node(Arc::new(node_on(store_a)), NetConfig::default()).await;
    let b = LocalServer::serve_node(Arc::new(node_on(store_b)), NetConfig::default()).await;
    let mut owner = a.connect("alice", Role::Player).await;
    let id = owner.create_id("wood").await;
    let ServerMessage::Subscribed { resources, .. } = owner.subscribe(id, None).await else {
        panic!("subscribe refused")
    };
    let from_a = resources[0].version;
    let mut watcher = b.connect("watcher", Role::Spectator).await;
    let ServerMessage::Subscribed { resources, .. } = watcher.subscribe(id, None).await else {
        panic!("subscribe refused")
    };
    let from_b = resources[0].version;

    // When two clients of each server add 1, ten times each, to that resource,
    const ADDS: usize = 10;
    let mut writers = Vec::new();
    for server in [&a, &b, &a, &b] {
        let mut client = server.connect("alice", Role::Player).await;
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
    let port = mongo::free_port();
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
