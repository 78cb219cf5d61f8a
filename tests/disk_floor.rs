//! The free-space floor of the embedded store (`--min-free-mb`): below it commands are refused
//! with `storage_full` before anything is written, reads go on, and the same command sent again
//! once there is room applies once.
//!
//! Guards against: finding the full disk by failing mid-batch (the journal or a flush hitting
//! ENOSPC poisons the engine for good), a refusal that reads as `unavailable` (an unknown outcome)
//! when nothing was written, and a floor that also stops reads.

use warden_testkit as support;

use std::sync::Arc;
use support::{DataDir, LocalServer, TestNode, applied, error_code};
use warden_core::domain::{CommandId, Role};
use warden_core::store::EventStore;
use warden_protocol::{ClientMessage, ErrorCode, ServerMessage};
use warden_store_embedded::{EmbeddedOptions, EmbeddedStore};

/// `allocate 1` on `id` with `command_id`.
fn allocate(
    id: warden_core::domain::ResourceId,
    command_id: CommandId,
) -> impl FnOnce(u64) -> ClientMessage {
    move |req| {
        ClientMessage::Allocate(warden_protocol::Allocate {
            req,
            command_id,
            resource_id: id,
            amount: 1,
            reason: "potion".into(),
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn below_the_floor_commands_are_refused_as_storage_full_and_reads_go_on() {
    let dir = DataDir::temp();
    // Given alice's gold, written with room to spare,
    let server = LocalServer::start_in(&dir, Default::default()).await;
    let mut alice = server.connect("alice", Role::Player).await;
    let gold = alice.create_id("gold").await;
    assert_eq!(applied(&alice.allocate(gold, 10).await).amount, 990);
    server.stop().await;

    // when the store runs with a floor above the free space of any disk,
    let floor = EmbeddedOptions {
        min_free_bytes: u64::MAX,
        ..EmbeddedOptions::default()
    };
    let store = Arc::new(EmbeddedStore::open_with(dir.path(), floor).expect("opens"));
    let node = TestNode::on(store, dir.clone(), |_| {});
    node.clock.set(support::T0);
    let server = LocalServer::serve(node, Default::default()).await;
    let mut alice = server.connect("alice", Role::Player).await;
    // then a command is refused as storage_full, saying why, and nothing is written;
    let command_id = CommandId::new();
    let refused = alice.request(allocate(gold, command_id)).await;
    assert_eq!(error_code(&refused), ErrorCode::StorageFull);
    match &refused {
        ServerMessage::Error { message, .. } => {
            assert!(message.contains("storage is full"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    let create = alice.create("mana").await;
    assert_eq!(error_code(&create), ErrorCode::StorageFull);
    assert_eq!(server.store().head(gold).await.unwrap(), 2);
    // reads go on.
    match alice.get(gold).await {
        ServerMessage::Resource { resource, .. } => assert_eq!(resource.version, 2),
        other => panic!("get: {other:?}"),
    }
    server.stop().await;

    // Once there is room, the same command (same id) applies, once.
    let server = LocalServer::start_in(&dir, Default::default()).await;
    let mut alice = server.connect("alice", Role::Player).await;
    match alice.request(allocate(gold, command_id)).await {
        ServerMessage::Applied {
            duplicate, version, ..
        } => assert_eq!((duplicate, version), (false, 3)),
        other => panic!("after the floor: {other:?}"),
    }
    match alice.request(allocate(gold, command_id)).await {
        ServerMessage::Applied {
            duplicate, version, ..
        } => assert_eq!((duplicate, version), (true, 3)),
        other => panic!("a resend: {other:?}"),
    }
    server.stop().await;
}

#[test]
fn the_free_space_of_the_data_directory_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let free = warden_store_embedded::space::free_bytes(dir.path()).unwrap();
    assert!(free > 0, "a writable temp dir has some room");
}
