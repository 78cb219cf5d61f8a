//! An actor that decides several mailbox commands together and commits them in one append must
//! behave exactly as if it ran them one at a time. Guards against: two commands sharing a
//! version, a rejection decided on a state that never committed, a retry applied twice inside a
//! batch, and a lost update when two actors (two nodes) race on one resource.

use warden_testkit as support;

use std::sync::Arc;
use support::{DataDir, T0, add, allocate, bare_registry, given_fixed, request, service};
use warden_core::actor::{CommandError, Registry};
use warden_core::clock::ManualClock;
use warden_core::domain::{Command, Rejection, ResourceId};
use warden_core::store::EventStore;
use warden_store_embedded::EmbeddedStore;

/// A registry (no node) on `store`, its clock fixed at T0.
fn registry(store: &Arc<EmbeddedStore>) -> Registry {
    bare_registry(store.clone(), &ManualClock::at(T0))
}

/// `command`, sent by a service.
fn by_service(command: Command) -> warden_core::actor::CommandRequest {
    request(&service(), command)
}

/// A resource holding `initial` with room to grow and no regeneration.
async fn create(registry: &Registry, initial: u64) -> ResourceId {
    given_fixed(registry, "alice", initial, 1_000_000).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_commands_on_one_resource_each_get_their_own_version() {
    // Given a resource and 300 concurrent adds of one unit (more than one batch's worth),
    let dir = DataDir::temp();
    let store = dir.open();
    let registry = registry(&store);
    let id = create(&registry, 0).await;
    let requests: Vec<_> = (0..300).map(|_| by_service(add(id, 1))).collect();
    let sent: Vec<_> = requests.iter().map(|r| r.command_id).collect();
    let replies =
        futures::future::join_all(requests.into_iter().map(|r| registry.execute(r))).await;

    // then each succeeds at a version of its own, with its own events,
    let mut versions = Vec::new();
    for (reply, command_id) in replies.into_iter().zip(&sent) {
        let reply = reply.expect("an add within max succeeds");
        assert!(!reply.duplicate);
        assert_eq!(reply.events.len(), 1);
        assert_eq!(reply.events[0].command_id, *command_id);
        assert_eq!(reply.events[0].version, reply.version);
        versions.push(reply.version);
    }
    versions.sort_unstable();
    assert_eq!(versions, (2..=301).collect::<Vec<_>>());
    // and the log holds every command exactly once, with the exact total.
    let log = store.events(id, 0, usize::MAX).await.unwrap();
    assert_eq!(log.len(), 301);
    for command_id in &sent {
        let record = store.find_command(*command_id).await.unwrap();
        assert!(record.is_some(), "every command has its own record");
    }
    let state = store.load(id).await.unwrap().state().unwrap();
    assert_eq!(state.balance.amount, 300);
    registry.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejections_follow_the_commands_decided_before_them() {
    // Given 5 units and 12 concurrent allocations of one unit each,
    let dir = DataDir::temp();
    let store = dir.open();
    let registry = registry(&store);
    let id = create(&registry, 5).await;
    let replies =
        futures::future::join_all((0..12).map(|_| registry.execute(by_service(allocate(id, 1)))))
            .await;
    // then exactly 5 succeed and the rest are refused as insufficient, never overdrawn.
    let ok = replies.iter().filter(|r| r.is_ok()).count();
    assert_eq!(ok, 5);
    for refused in replies.iter().filter_map(|r| r.as_ref().err()) {
        assert!(
            matches!(
                refused,
                CommandError::Rejected(Rejection::Insufficient { available: 0, .. })
            ),
            "got {refused:?}"
        );
    }
    let state = store.load(id).await.unwrap().state().unwrap();
    assert_eq!((state.balance.amount, state.version), (0, 6));
    registry.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_among_concurrent_commands_gets_the_first_outcome() {
    // Given a command already applied,
    let dir = DataDir::temp();
    let store = dir.open();
    let registry = registry(&store);
    let id = create(&registry, 0).await;
    let first = by_service(add(id, 7));
    let original = registry.execute(first.clone()).await.unwrap();
    // when it is retried among other commands that reach the actor together,
    let mut batch: Vec<_> = (0..20).map(|_| by_service(add(id, 1))).collect();
    batch.insert(10, first.clone());
    let replies = futures::future::join_all(batch.into_iter().map(|r| registry.execute(r))).await;
    // then the retry answers with the first outcome and applies nothing again,
    let retry = replies[10].as_ref().expect("a retry is not an error");
    assert!(retry.duplicate);
    assert_eq!(retry.version, original.version);
    // and every other command still commits once.
    assert!(replies.iter().all(|r| r.is_ok()));
    let state = store.load(id).await.unwrap().state().unwrap();
    assert_eq!((state.balance.amount, state.version), (27, 22));
    registry.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_actors_racing_on_one_resource_lose_no_update() {
    // Given two registries (as two nodes would) on one store, each with an actor for the same
    // resource,
    let dir = DataDir::temp();
    let store = dir.open();
    let a = registry(&store);
    let b = registry(&store);
    let id = create(&a, 0).await;
    // when both send batches of adds at once (so their batches conflict and are decided again),
    let sends = (0..200).map(|i| {
        let r = if i % 2 == 0 { a.clone() } else { b.clone() };
        async move { r.execute(by_service(add(id, 1))).await }
    });
    let replies = futures::future::join_all(sends).await;
    // then every success is in the log exactly once and the total matches the successes.
    let ok: Vec<_> = replies.iter().filter_map(|r| r.as_ref().ok()).collect();
    for failed in replies.iter().filter_map(|r| r.as_ref().err()) {
        assert!(
            matches!(failed, CommandError::Contention),
            "only contention may fail an add, got {failed:?}"
        );
    }
    let mut versions: Vec<_> = ok.iter().map(|r| r.version).collect();
    versions.sort_unstable();
    versions.dedup();
    assert_eq!(versions.len(), ok.len(), "no two successes share a version");
    let state = store.load(id).await.unwrap().state().unwrap();
    assert_eq!(state.balance.amount, ok.len() as u64);
    assert_eq!(state.version, 1 + ok.len() as u64);
    a.shutdown().await;
    b.shutdown().await;
}
