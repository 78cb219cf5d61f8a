//! Concurrency: many writers on one resource, on one node and on two nodes sharing a store.
//!
//! Guards against: a lost update (two commands decided on the same version, one overwriting the
//! other), a version committed twice or skipped, a success reply for a change that is not in the
//! log, and a command reported as failed (`conflict`) that was in fact applied.

use warden_testkit as support;

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;
use support::{Hooks, TestNode, alice, given_fixed, request};
use warden_core::actor::{CommandError, CommandReply, Registry};
use warden_core::domain::ClientSchema;
use warden_core::domain::{
    AddResource, AllocateResource, Command, CommandId, EventEnvelope, ResourceEvent, ResourceId,
    replay,
};
use warden_core::node::NodeConfig;
use warden_core::store::EventStore;
use warden_net::Coded;
use warden_protocol::ErrorCode;

const INITIAL: u64 = 500;

/// A resource of alice's with no regeneration, so the amount moves only by commands.
async fn create_static(registry: &Registry) -> ResourceId {
    given_fixed(registry, "alice", INITIAL, 1_000_000_000).await
}

/// The `i`-th command of racer `racer`: a mix of allocates and adds of 1 to 19.
fn command(id: ResourceId, racer: u64, i: u64) -> (Command, i64) {
    let n = (racer * 7 + i * 13) % 19 + 1;
    if (racer + i).is_multiple_of(2) {
        let cmd = Command::Allocate(AllocateResource {
            resource_id: id,
            amount: n,
            reason: String::new(),
        });
        (cmd, -(n as i64))
    } else {
        let cmd = Command::Add(AddResource {
            resource_id: id,
            amount: n,
            reason: String::new(),
        });
        (cmd, n as i64)
    }
}

/// What one racer saw: each successful reply with the command id and the change it made, and
/// the ids of the commands that failed with `conflict`.
#[derive(Default)]
struct Seen {
    ok: Vec<(CommandId, i64, CommandReply)>,
    conflicted: Vec<CommandId>,
    refused: usize,
}

async fn race(registry: Registry, id: ResourceId, racer: u64, commands: u64) -> Seen {
    let mut seen = Seen::default();
    for i in 0..commands {
        let (command, delta) = command(id, racer, i);
        let request = request(&alice(), command);
        let command_id = request.command_id;
        let outcome = registry.execute(request).await;
        match outcome {
            Ok(reply) => seen.ok.push((command_id, delta, reply)),
            Err(CommandError::Contention) => seen.conflicted.push(command_id),
            Err(CommandError::Rejected(r)) => {
                assert_eq!(
                    r.code(),
                    ErrorCode::Insufficient,
                    "the only refusal possible here"
                );
                seen.refused += 1;
            }
            Err(other) => panic!("unexpected failure: {other}"),
        }
    }
    seen
}

/// Checks the log against everything the racers were told.
fn check_log(log: &[EventEnvelope], seen: &[Seen]) {
    let versions: Vec<u64> = log.iter().map(|e| e.version).collect();
    assert_eq!(
        versions,
        (1..=log.len() as u64).collect::<Vec<_>>(),
        "versions 1..=N, each once, no gap"
    );
    let ids: HashSet<CommandId> = log.iter().map(|e| e.command_id).collect();
    assert_eq!(ids.len(), log.len(), "one command per event, none twice");

    let successes: usize = seen.iter().map(|s| s.ok.len()).sum();
    assert_eq!(
        log.len(),
        1 + successes,
        "the creation plus one event per success"
    );

    let mut reply_versions = BTreeMap::new();
    for (command_id, delta, reply) in seen.iter().flat_map(|s| &s.ok) {
        assert!(!reply.duplicate);
        let event = &log[reply.version as usize - 1];
        assert_eq!(
            event.command_id, *command_id,
            "the reply's version holds its command"
        );
        let amount = match &event.event {
            ResourceEvent::ResourceAllocated { amount, .. } => -(*amount as i64),
            ResourceEvent::ResourceAdded { amount, .. } => *amount as i64,
            other => panic!("unexpected event {other:?}"),
        };
        assert_eq!(amount, *delta);
        assert_eq!(
            replay(None, &log[..reply.version as usize]).as_ref(),
            Some(&reply.resource),
            "the reply's resource is the log's state at that version"
        );
        assert!(
            reply_versions.insert(reply.version, command_id).is_none(),
            "two successes at version {}",
            reply.version
        );
    }
    for command_id in seen.iter().flat_map(|s| &s.conflicted) {
        assert!(
            !ids.contains(command_id),
            "a command answered `conflict` was applied"
        );
    }

    let expected = INITIAL as i64
        + seen
            .iter()
            .flat_map(|s| &s.ok)
            .map(|(_, delta, _)| delta)
            .sum::<i64>();
    let state = replay(None, log).unwrap();
    assert_eq!(state.balance.amount as i64, expected, "no update lost");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_concurrent_writers_on_one_node_lose_no_update() {
    const RACERS: u64 = 32;
    const EACH: u64 = 50;
    let t = TestNode::embedded();
    let (node, store) = (t.node, &t.store);
    let id = create_static(node.registry()).await;

    let racers: Vec<_> = (0..RACERS)
        .map(|r| tokio::spawn(race(node.registry().clone(), id, r, EACH)))
        .collect();
    let mut seen = Vec::new();
    for r in racers {
        seen.push(r.await.unwrap());
    }
    assert!(
        seen.iter().all(|s| s.conflicted.is_empty()),
        "one actor serialises its resource: no conflict on a single node"
    );

    let log = store.events(id, 0, usize::MAX).await.unwrap();
    check_log(&log, &seen);
    let stored = store.load(id).await.unwrap().state().unwrap();
    assert_eq!(Some(&stored), replay(None, &log).as_ref());

    // The read model holds the same final state (written with each commit, so already there).
    let view = node.queries().view(id).await.unwrap().unwrap();
    assert_eq!(
        view,
        warden_core::domain::ClientResource::from_server(&stored)
    );
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_actor_on_another_node_conflicts_reloads_and_applies_once() {
    // Two nodes on one store whose appends are counted (to tell that the retry path really ran).
    let hooks = Arc::new(Hooks::new());
    let t = TestNode::hooked(&hooks, |_| {});
    let b = t.another(|_| {});
    let (a, inner) = (t.node, &t.store);
    let id = create_static(a.registry()).await;

    // Given: b's actor has loaded the resource (version 2 after its own command) ...
    let b1 = race(b.registry().clone(), id, 1, 1).await;
    assert_eq!(b1.ok[0].2.version, 2);
    // ... and then a commits version 3, so b's copy is stale.
    let a1 = race(a.registry().clone(), id, 2, 1).await;
    assert_eq!(a1.ok[0].2.version, 3);
    // When: b decides on its stale copy.
    let b2 = race(b.registry().clone(), id, 3, 1).await;
    // Then: its append conflicted, it reloaded and committed on top of a's change.
    assert!(hooks.conflicts() >= 1, "b must have met a conflict");
    assert_eq!(b2.ok[0].2.version, 4);

    let log = inner.events(id, 0, usize::MAX).await.unwrap();
    check_log(&log, &[b1, a1, b2]);
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_racing_on_one_resource_commit_each_version_once() {
    const RACERS_PER_NODE: u64 = 16;
    const EACH: u64 = 25;
    // Few attempts and a tiny back-off, so some commands exhaust their retries and must be
    // reported as `conflict` without having been applied.
    let few_attempts = |c: &mut NodeConfig| {
        c.actors.max_attempts = 3;
        c.actors.backoff = Duration::from_micros(50);
    };
    let hooks = Arc::new(Hooks::new());
    let t = TestNode::hooked(&hooks, few_attempts);
    let b = t.another(few_attempts);
    let (a, inner) = (t.node, &t.store);
    let id = create_static(a.registry()).await;

    let racers: Vec<_> = (0..2 * RACERS_PER_NODE)
        .map(|r| {
            let registry = if r % 2 == 0 {
                a.registry()
            } else {
                b.registry()
            };
            tokio::spawn(race(registry.clone(), id, r, EACH))
        })
        .collect();
    let mut seen = Vec::new();
    for r in racers {
        seen.push(r.await.unwrap());
    }

    let log = inner.events(id, 0, usize::MAX).await.unwrap();
    check_log(&log, &seen);
    let from = |node: u64| {
        seen.iter()
            .skip(node as usize)
            .step_by(2)
            .map(|s| s.ok.len())
            .sum::<usize>()
    };
    let conflicted: usize = seen.iter().map(|s| s.conflicted.len()).sum();
    let refused: usize = seen.iter().map(|s| s.refused).sum();
    eprintln!(
        "two nodes: {} + {} successes, {conflicted} gave up on conflict, {refused} refused, {} append conflicts",
        from(0),
        from(1),
        hooks.conflicts()
    );
    assert!(
        from(0) > 0 && from(1) > 0,
        "both nodes got commands through"
    );
    a.shutdown().await;
    b.shutdown().await;
}
