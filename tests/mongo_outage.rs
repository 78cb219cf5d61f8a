//! MongoDB lost mid-run and back again. Guards against a command reported as a success that was
//! never stored, against acknowledged commands lost across the outage, and against a server that
//! needs a restart to use MongoDB again.
//!
//! The test runs its own nx-27017 on its own port with `--data-dir`, so the data survives killing
//! it; it finds the executable through `WARDEN_TEST_NX27017` (set by `scripts/test`) or in
//! `.mongo-venv/bin/`.
#![cfg(feature = "mongodb")]

use warden_testkit as support;

use std::time::Duration;
use support::mongo::{self, OwnMongo, PATIENCE, free_port, node_on};
use support::{given_fixed, request_id, service};
use warden_core::actor::{CommandError, CommandReply, CommandRequest};
use warden_core::domain::{CommandId, ResourceId};
use warden_core::store::EventStore;
use warden_net::Coded;
use warden_protocol::ErrorCode;

/// A service's add of 1 to `id` under `command_id`.
fn add(id: ResourceId, command_id: CommandId) -> CommandRequest {
    request_id(command_id, &service(), support::add(id, 1))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_fail_as_unavailable_while_mongodb_is_down_and_recover_without_restart() {
    // Given a node on our own MongoDB, with a resource and five acknowledged adds,
    let data = tempfile::tempdir().unwrap();
    let port = free_port();
    let mongo = OwnMongo::start(port, data.path());
    let uri = format!("mongodb://127.0.0.1:{port}/?directConnection=true");
    let store = mongo::store_at(&uri, "outage").await;
    let node = node_on(store.clone());
    let id = given_fixed(node.registry(), "alice", 0, 1_000_000).await;
    let mut acknowledged: Vec<CommandReply> = Vec::new();
    for _ in 0..5 {
        acknowledged.push(
            node.registry()
                .execute(add(id, CommandId::new()))
                .await
                .unwrap(),
        );
    }

    // When MongoDB dies, every command fails with `unavailable`: none is reported as done.
    mongo.kill();
    for _ in 0..3 {
        match node.registry().execute(add(id, CommandId::new())).await {
            Err(e @ CommandError::Store(_)) => assert_eq!(e.code(), ErrorCode::Unavailable),
            other => panic!("a command during the outage must be unavailable, got {other:?}"),
        }
    }

    // When it comes back on the same port and data, commands succeed again with the same node
    // (a client retries an `unavailable` command with the same command id).
    let _mongo = OwnMongo::start(port, data.path());
    let deadline = tokio::time::Instant::now() + PATIENCE;
    for _ in 0..5 {
        let command_id = CommandId::new();
        let reply = loop {
            match node.registry().execute(add(id, command_id)).await {
                Ok(reply) => break reply,
                Err(e)
                    if e.code() == ErrorCode::Unavailable
                        && tokio::time::Instant::now() < deadline =>
                {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("after MongoDB returned, commands must succeed: {e}"),
            }
        };
        assert!(!reply.duplicate);
        acknowledged.push(reply);
    }

    // Then every acknowledged command is in the log, and nothing else was applied.
    for reply in &acknowledged {
        let command_id = reply.events[0].command_id;
        let record = store.find_command(command_id).await.unwrap();
        assert_eq!(
            record.map(|r| r.last_version),
            Some(reply.version),
            "acknowledged command {command_id} is stored at the version it was answered with"
        );
    }
    let state = store.load(id).await.unwrap().state().unwrap();
    assert_eq!(state.balance.amount, acknowledged.len() as u64);
    assert_eq!(state.version, acknowledged.len() as u64 + 1);
    node.shutdown().await;
}
