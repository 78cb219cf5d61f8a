//! The life of a resource actor: passivation, its own lock-expiry timer, no actor for a missing
//! resource, and a shutdown that answers what is already queued.
//!
//! Guards against: actors (and their memory) piling up for idle or non-existent resources, a
//! reloaded actor that disagrees with the log, a lock that never ends unless someone writes,
//! and commands left hanging (or silently dropped) by a shutdown.

use warden_testkit as support;

use std::sync::Arc;
use std::time::Duration;
use support::{Hooks, PATIENCE, TestNode, add, alice, create_gold, execute, request, wait_for};
use tokio::sync::watch;
use warden_core::actor::{CommandError, Registry};
use warden_core::clock::SystemClock;
use warden_core::domain::ClientSchema;
use warden_core::domain::{
    ClientResource, Command, CreateResource, EventEnvelope, Principal, ResourceEvent, ResourceId,
    replay,
};
use warden_core::metrics::ScrapeGauges;
use warden_core::store::{EventStore, ReadModelStore};
use warden_net::Coded;
use warden_protocol::ErrorCode;

/// Waits until `registry` has `n` live actors; fails after [`PATIENCE`].
async fn until_live_actors(registry: &Registry, n: usize) {
    wait_for(&format!("{n} live actors"), PATIENCE, || {
        registry.live_actors() == n
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_actor_passivates_and_the_next_command_reloads_from_the_store() {
    let t = TestNode::embedded_with(|c| c.actors.idle_after = Duration::from_millis(50));
    let (node, store, clock) = (t.node, &t.store, &t.clock);
    let id = execute(node.registry(), &alice(), create_gold())
        .await
        .unwrap()
        .resource_id;
    for _ in 0..3 {
        clock.advance_ms(1_500);
        execute(node.registry(), &alice(), add(id, 1))
            .await
            .unwrap();
    }
    assert_eq!(node.registry().live_actors(), 1);

    // When nothing happens for longer than idle_after, the actor stops.
    until_live_actors(node.registry(), 0).await;

    // The store holds the log (a snapshot comes every 64 versions) ...
    let loaded = store.load(id).await.unwrap();
    assert_eq!(
        loaded.events.iter().map(|e| e.version).collect::<Vec<_>>(),
        vec![1, 2, 3, 4]
    );
    // ... and a new actor built from it decides exactly as the old one would have.
    clock.advance_ms(1_500);
    let reply = execute(node.registry(), &alice(), add(id, 1))
        .await
        .unwrap();
    assert_eq!(node.registry().live_actors(), 1);
    let log = store.events(id, 0, usize::MAX).await.unwrap();
    assert_eq!(reply.version, 5);
    assert_eq!(replay(None, &log).as_ref(), Some(&reply.resource));
    // 1000 + 3 adds of 1 + 6 s at 0.5/s.
    assert_eq!(reply.resource.balance.amount, 1000 + 4 + 3);
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lock_expires_by_itself_through_the_actors_timer() {
    let t = TestNode::embedded_with(|c| c.clock = Arc::new(SystemClock));
    let (node, store) = (t.node, &t.store);
    let created = execute(node.registry(), &alice(), create_gold())
        .await
        .unwrap();
    let id = created.resource_id;
    let mut changes = node.hub().subscribe_resource(id);
    let locked = execute(
        node.registry(),
        &alice(),
        support::lock(id, "Maintenance", 150),
    )
    .await
    .unwrap();
    let expires_at = locked.resource.lock.as_ref().unwrap().expires_at;

    // No command is sent: the expiry must be recorded and published by the actor itself.
    let expiry = tokio::time::timeout(PATIENCE, async {
        loop {
            let change = changes.recv().await.expect("the hub stays open");
            if let Some(e) = change
                .events
                .iter()
                .find(|e| matches!(e.event, ResourceEvent::ResourceLockExpired { .. }))
            {
                return (e.clone(), change.state.clone());
            }
        }
    })
    .await
    .expect("the lock expiry was never published");
    let (event, state): (EventEnvelope, _) = expiry;
    assert_eq!(
        event.event,
        ResourceEvent::ResourceLockExpired {
            expired_at: expires_at
        }
    );
    assert_eq!(event.version, 3);
    assert!(
        event.at >= expires_at,
        "recorded no earlier than the expiry"
    );
    // The whole state after the expiry: the locked state with the lock gone, at version 3,
    // recorded by the system at the event's instant under the event's command id; the balance
    // is the one the lock left (an expiry records no accrual of its own).
    let mut expected = locked.resource.clone();
    expected.lock = None;
    expected.version = 3;
    expected.updated_at = event.at;
    expected.updated_by = Principal::system().player;
    expected.last_command = event.command_id;
    assert_eq!(state, expected);
    assert_eq!(state.created_at, created.resource.created_at);
    assert_eq!(
        store.head(id).await.unwrap(),
        3,
        "committed, not just published"
    );
    assert_eq!(
        store.load(id).await.unwrap().state().as_ref(),
        Some(&state),
        "the stored state is the published one"
    );

    // The read model holds that state: its view was written in the same commit.
    let view = node.queries().view(id).await.unwrap().unwrap();
    assert_eq!(view, ClientResource::from_server(&state));
    assert!(!view.locked);
    assert_eq!(view.lock_reason, None);
    assert_eq!(
        (view.version, view.amount),
        (3, locked.resource.balance.amount)
    );

    // And the metrics count it, as a kind of its own.
    let counted = r#"warden_commands_total{kind="expire_lock",outcome="applied"} 1"#;
    wait_for("the expiry to be counted", PATIENCE, || {
        node.metrics()
            .render(ScrapeGauges::default())
            .contains(counted)
    })
    .await;
    node.shutdown().await;
}
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_to_a_missing_resource_is_not_found_and_leaves_no_actor() {
    let t = TestNode::embedded();
    let (node, store) = (t.node, &t.store);

    let missing = ResourceId::new();
    let r = execute(node.registry(), &alice(), add(missing, 1))
        .await
        .unwrap_err();
    assert_eq!(r.code(), ErrorCode::NotFound);
    until_live_actors(node.registry(), 0).await;
    assert_eq!(store.head(missing).await.unwrap(), 0, "nothing written");

    // A refused create leaves no actor either.
    let r = execute(
        node.registry(),
        &alice(),
        Command::Create(CreateResource {
            name: None,
            resource_type: "diamonds".into(),
            owner: None,
            params: None,
        }),
    )
    .await
    .unwrap_err();
    assert_eq!(r.code(), ErrorCode::UnknownResourceType);
    until_live_actors(node.registry(), 0).await;
    assert!(store.resource_ids().await.unwrap().is_empty());
    node.shutdown().await;
}

/// Hooks under which every append waits while the gate (the sender) holds `true`.
fn gated_appends() -> (Arc<watch::Sender<bool>>, Arc<Hooks>) {
    let gate = Arc::new(watch::channel(false).0);
    let hooks = Arc::new(Hooks::new().before_append({
        let gate = gate.clone();
        move |_| {
            let mut held = gate.subscribe();
            async move {
                let _ = held.wait_for(|held| !*held).await;
                None
            }
        }
    }));
    (gate, hooks)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_answers_every_command_already_in_a_mailbox() {
    const QUEUED: u64 = 20;
    // Appends wait while the gate is held, so the test can keep the actor busy while commands
    // pile up in its mailbox.
    let (gate, hooks) = gated_appends();
    let t = TestNode::hooked(&hooks, |_| {});
    let (node, inner) = (t.node, &t.store);
    let registry = node.registry().clone();
    let id = execute(&registry, &alice(), create_gold())
        .await
        .unwrap()
        .resource_id;

    // Given: the actor is stuck in an append ...
    gate.send_replace(true);
    let arrived = hooks.arrived();
    let busy = tokio::spawn({
        let registry = registry.clone();
        async move { execute(&registry, &alice(), add(id, 1)).await }
    });
    wait_for("the first command to reach the store", PATIENCE, || {
        hooks.arrived() > arrived
    })
    .await;
    // ... and more commands wait in its mailbox (one poll of `execute` delivers the mail).
    let mut queued = Vec::new();
    for _ in 0..QUEUED {
        let mut pending = Box::pin(registry.execute(request(&alice(), add(id, 1))));
        assert!(futures::poll!(pending.as_mut()).is_pending());
        queued.push(pending);
    }

    // When: the node shuts down while they wait.
    let shutdown = tokio::spawn(node.shutdown());
    let refusing = &registry;
    support::wait_for_some(
        "the registry to refuse new commands",
        PATIENCE,
        || async move {
            let outcome = execute(refusing, &alice(), add(ResourceId::new(), 1)).await;
            matches!(outcome, Err(CommandError::ShuttingDown)).then_some(())
        },
    )
    .await;
    gate.send_replace(false);

    // Then: every queued command is answered, with a real outcome, in order.
    let first = busy.await.unwrap().expect("the busy command completes");
    assert_eq!(first.version, 2);
    for (i, pending) in queued.into_iter().enumerate() {
        let reply = tokio::time::timeout(PATIENCE, pending)
            .await
            .expect("a queued command was left hanging")
            .expect("a queued command is applied, not dropped");
        assert_eq!(reply.version, 3 + i as u64);
    }
    tokio::time::timeout(PATIENCE, shutdown)
        .await
        .expect("shutdown finishes")
        .unwrap();
    assert_eq!(inner.head(id).await.unwrap(), 2 + QUEUED);
    // And the read model was given everything that was published before the node stopped.
    let view = inner.get(id).await.unwrap().unwrap();
    assert_eq!(view.version, 2 + QUEUED);
    // Nothing is accepted afterwards.
    let late = execute(&registry, &alice(), add(id, 1)).await.unwrap_err();
    assert_eq!(late.code(), ErrorCode::ShuttingDown);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn senders_wait_for_room_in_a_full_mailbox_and_every_command_lands_once() {
    const SENT: u64 = 12;
    // Appends wait while the gate is held: the actor stays busy and its mailbox (room for 2)
    // fills up.
    let (gate, hooks) = gated_appends();
    let t = TestNode::hooked(&hooks, |c| c.actors.mailbox = 2);
    let (node, store) = (t.node, &t.store);
    let registry = node.registry().clone();
    let id = execute(&registry, &alice(), create_gold())
        .await
        .unwrap()
        .resource_id;
    let created = store.load(id).await.unwrap().state().unwrap();

    gate.send_replace(true);
    let sends: Vec<_> = (0..SENT)
        .map(|_| {
            let registry = registry.clone();
            tokio::spawn(async move { execute(&registry, &alice(), add(id, 1)).await })
        })
        .collect();
    // More senders than the mailbox holds: some of them wait for room (and are counted).
    let waited = || {
        let text = node.metrics().render(Default::default());
        text.lines()
            .find_map(|l| l.strip_prefix("warden_actor_mailbox_full_total "))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    wait_for("a sender to wait for room", PATIENCE, || waited() > 0.0).await;
    gate.send_replace(false);

    let mut versions = Vec::new();
    for send in sends {
        let reply = tokio::time::timeout(PATIENCE, send)
            .await
            .expect("every sender is answered")
            .unwrap()
            .expect("every command commits");
        versions.push(reply.version);
    }
    versions.sort_unstable();
    assert_eq!(versions, (2..2 + SENT).collect::<Vec<_>>());
    let state = store.load(id).await.unwrap().state().unwrap();
    assert_eq!(state.balance.amount, created.balance.amount + SENT);
    node.shutdown().await;
}
