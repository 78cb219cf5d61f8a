//! `state_at` over the wire: a resource's past state, rebuilt from its log, by version or instant.
//!
//! Guards against: time travel that shows a state the resource never had (a wrong fold, the
//! regeneration or a lock's expiry not brought forward to the instant asked), a spectator seeing
//! the lock reason or regeneration rate of a past state, and bad points answered with anything but
//! a clear error code.

use warden_testkit as support;

use support::{LocalServer, error_code};
use warden_core::clock::Clock;
use warden_core::domain::{ClientResource, ResourceId, Role, Timestamp};
use warden_protocol::ErrorCode;
use warden_protocol::{ClientMessage, ServerMessage};

async fn state_at(
    c: &mut support::Client,
    id: ResourceId,
    version: Option<u64>,
    at: Option<i64>,
) -> ServerMessage {
    c.request(|req| {
        ClientMessage::StateAt(warden_protocol::StateAt {
            req,
            resource_id: id,
            version,
            at: at.map(Timestamp),
        })
    })
    .await
}

fn state(msg: ServerMessage) -> (u64, ClientResource) {
    match msg {
        ServerMessage::State {
            version, resource, ..
        } => (version, resource),
        other => panic!("expected a state, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_version_shows_the_state_right_after_that_event() {
    let server = LocalServer::start().await;
    let mut alice = server.connect("alice", Role::Player).await;
    // Given gold created at 1000 (v1), spent 200 (v2), credited 500 (v3), locked (v4), unlocked (v5)
    let id = alice.create_id("gold").await;
    alice.allocate(id, 200).await;
    alice.add(id, 500).await;
    alice.lock(id, "Maintenance", 60_000).await;
    alice.unlock(id).await;

    // then each version shows the amount and lock of that moment, for the owner in full.
    let expected = [
        (1, 1000, None),
        (2, 800, None),
        (3, 1300, None),
        (4, 1300, Some("Maintenance")),
        (5, 1300, None),
    ];
    for (v, amount, lock) in expected {
        let (version, r) = state(state_at(&mut alice, id, Some(v), None).await);
        assert_eq!(version, v);
        assert_eq!(r.version, v);
        assert_eq!(r.amount, amount, "amount at version {v}");
        assert_eq!(r.locked, lock.is_some(), "locked at version {v}");
        assert_eq!(r.lock_reason.as_deref(), lock, "lock reason at version {v}");
        assert_eq!(
            r.regen_milli,
            Some(500),
            "the owner sees the regeneration rate"
        );
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instant_shows_the_last_event_before_it_with_regeneration_and_expiry_applied() {
    let server = LocalServer::start().await;
    let mut alice = server.connect("alice", Role::Player).await;
    let t0 = server.clock().now().millis();
    let id = alice.create_id("gold").await; // v1 at t0: 1000, regenerating 0.5/s
    alice.allocate(id, 200).await; // v2 at t0: 800
    server.clock().advance_ms(10_000);
    alice.lock(id, "Raid", 5_000).await; // v3 at t0+10s, until t0+15s
    server.clock().advance_ms(60_000);
    alice.add(id, 1).await; // v5 (v4: the lock's expiry, recorded now)

    // Four seconds after the allocate: version 2, with 2 gold regenerated.
    let (version, r) = state(state_at(&mut alice, id, None, Some(t0 + 4_000)).await);
    assert_eq!(version, 2);
    assert_eq!((r.amount, r.amount_at.millis()), (802, t0 + 4_000));
    assert!(!r.locked);
    // During the lock: locked, with its reason.
    let (version, r) = state(state_at(&mut alice, id, None, Some(t0 + 12_000)).await);
    assert_eq!(version, 3);
    assert!(r.locked);
    assert_eq!(r.lock_reason.as_deref(), Some("Raid"));
    assert_eq!(r.amount, 806);
    // After the lock ran out but before anything recorded it: no longer locked.
    let (version, r) = state(state_at(&mut alice, id, None, Some(t0 + 20_000)).await);
    assert_eq!(version, 3);
    assert!(!r.locked, "a lock is over once its expiry has passed");
    assert_eq!(r.lock_reason, None);
    // Before the resource existed: a clear error.
    let before = state_at(&mut alice, id, None, Some(t0 - 1)).await;
    assert_eq!(error_code(&before), ErrorCode::BeforeCreation);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn others_get_the_spectator_view_of_a_past_state() {
    let server = LocalServer::start().await;
    let mut alice = server.connect("alice", Role::Player).await;
    let mut watcher = server.connect("watcher", Role::Spectator).await;
    let mut bob = server.connect("bob", Role::Player).await;
    let mut service = server.connect("backend", Role::Service).await;
    let id = alice.create_id("gold").await;
    alice.lock(id, "Secret plan", 60_000).await;

    for (who, c) in [("spectator", &mut watcher), ("another player", &mut bob)] {
        let (_, r) = state(state_at(c, id, Some(2), None).await);
        assert!(r.locked, "{who} sees that it was locked");
        assert_eq!(r.lock_reason, None, "{who} never sees the lock reason");
        assert_eq!(r.lock_expires_at, None, "{who} never sees the lock expiry");
        assert_eq!(
            r.regen_milli, None,
            "{who} never sees the regeneration rate"
        );
    }
    let (_, r) = state(state_at(&mut service, id, Some(2), None).await);
    assert_eq!(
        r.lock_reason.as_deref(),
        Some("Secret plan"),
        "a service sees all"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_points_get_clear_error_codes() {
    let server = LocalServer::start().await;
    let mut alice = server.connect("alice", Role::Player).await;
    let id = alice.create_id("gold").await;

    let code = |m: ServerMessage| error_code(&m);
    assert_eq!(
        code(state_at(&mut alice, id, Some(0), None).await),
        ErrorCode::InvalidVersion
    );
    assert_eq!(
        code(state_at(&mut alice, id, Some(2), None).await),
        ErrorCode::InvalidVersion
    );
    assert_eq!(
        code(state_at(&mut alice, id, None, None).await),
        ErrorCode::BadMessage
    );
    assert_eq!(
        code(state_at(&mut alice, id, Some(1), Some(0)).await),
        ErrorCode::BadMessage
    );
    assert_eq!(
        code(state_at(&mut alice, ResourceId::new(), Some(1), None).await),
        ErrorCode::NotFound
    );
    // The session stays usable.
    let (version, _) = state(state_at(&mut alice, id, Some(1), None).await);
    assert_eq!(version, 1);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_longer_than_one_page_is_folded_across_pages() {
    let server = LocalServer::start().await;
    let mut alice = server.connect("alice", Role::Player).await;
    // wood starts at 0 and does not regenerate: after n adds of 1 (version n + 1) it holds n.
    let id = alice.create_id("wood").await;
    for _ in 0..1_200 {
        alice.add(id, 1).await;
    }
    for v in [1_000, 1_001, 1_150, 1_201] {
        let (version, r) = state(state_at(&mut alice, id, Some(v), None).await);
        assert_eq!((version, r.amount), (v, v - 1), "version {v}");
    }
    server.stop().await;
}
