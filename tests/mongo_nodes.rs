//! Two Warden nodes on one MongoDB. Guards against the scale-out failures: two nodes both
//! committing version N+1 (a lost update), a retried command applied twice, and a subscriber on
//! one node never hearing of what was committed through the other.
#![cfg(feature = "mongodb")]

mod mongo_support;

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast;
use warden::actor::{CommandError, CommandReply, CommandRequest};
use warden::domain::{
    AddResource, Command, CommandId, CreateResource, PlayerId, Principal, ResourceId,
    ResourceParams, replay,
};
use warden::hub::Change;
use warden::node::{Node, NodeConfig};
use warden::store::{Backend, EventStore};

/// Longest a test waits for something that should happen; only a failure ever waits this long.
const PATIENCE: Duration = Duration::from_secs(30);

async fn node_on(store: Arc<warden::store::mongo::MongoStore>) -> Node {
    let backend = Backend {
        events: store.clone(),
        read: store.clone(),
        mongo: Some(store),
    };
    Node::start(&backend, NodeConfig::default())
}

fn service() -> Principal {
    Principal::service("game-backend")
}

async fn create(node: &Node, owner: &str) -> CommandReply {
    node.registry()
        .execute(CommandRequest {
            command_id: CommandId::new(),
            principal: service(),
            command: Command::Create(CreateResource {
                resource_type: "gold".into(),
                owner: Some(PlayerId::new(owner)),
                params: Some(ResourceParams {
                    initial_amount: 0,
                    max_amount: 1_000_000,
                    regen_milli: 0,
                }),
            }),
        })
        .await
        .expect("create succeeds")
}

/// Adds 1, retrying with the same command id for as long as contention says so (what a client
/// is told to do).
async fn add_one(node: &Node, id: ResourceId, command_id: CommandId) -> CommandReply {
    loop {
        let outcome = node
            .registry()
            .execute(CommandRequest {
                command_id,
                principal: service(),
                command: Command::Add(AddResource {
                    resource_id: id,
                    amount: 1,
                    reason: "two nodes".into(),
                }),
            })
            .await;
        match outcome {
            Ok(reply) => return reply,
            Err(CommandError::Contention) => continue,
            Err(e) => panic!("add failed: {e}"),
        }
    }
}

/// Receives from `rx` until `done` says the collected changes are enough, or fails after
/// [`PATIENCE`].
async fn collect_until(
    rx: &mut broadcast::Receiver<Arc<Change>>,
    mut done: impl FnMut(&[Arc<Change>]) -> bool,
) -> Vec<Arc<Change>> {
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !done(&seen) {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Ok(change)) => seen.push(change),
            Ok(Err(e)) => panic!("hub receiver failed: {e}"),
            Err(_) => panic!(
                "gave up after {PATIENCE:?}; versions seen: {:?}",
                seen.iter().map(|c| c.version()).collect::<Vec<_>>()
            ),
        }
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn writers_on_two_nodes_lose_no_update_and_a_subscriber_hears_both() {
    // Given two nodes on one database and a resource created through node A,
    let (store_a, db) = mongo_support::fresh_store("two_nodes_writers").await;
    let store_b = mongo_support::another_node(&db).await;
    let a = node_on(store_a.clone()).await;
    let b = node_on(store_b.clone()).await;
    let id = create(&a, "alice").await.resource_id;
    // and a subscriber on node A that the relay has started serving (it announces the head).
    let mut rx = a.hub().subscribe_resource(id);
    collect_until(&mut rx, |seen| seen.iter().any(|c| c.version() >= 1)).await;

    // When 4 writers on each node add 1, 15 times each, to that resource,
    const WRITERS: usize = 4;
    const ADDS: usize = 15;
    let mut tasks = Vec::new();
    for node in [&a, &b] {
        for _ in 0..WRITERS {
            let registry = node.registry().clone();
            tasks.push(tokio::spawn({
                async move {
                    let mut ids = Vec::new();
                    for _ in 0..ADDS {
                        let command_id = CommandId::new();
                        // Set once a try failed with `unavailable`: it may have committed, so the
                        // retry (same command id, as a client would) may find it done.
                        let mut retried = false;
                        loop {
                            match registry
                                .execute(CommandRequest {
                                    command_id,
                                    principal: service(),
                                    command: Command::Add(AddResource {
                                        resource_id: id,
                                        amount: 1,
                                        reason: "two nodes".into(),
                                    }),
                                })
                                .await
                            {
                                Ok(reply) => {
                                    assert!(
                                        retried || !reply.duplicate,
                                        "a fresh command is no duplicate"
                                    );
                                    break;
                                }
                                Err(CommandError::Contention) => continue,
                                // nx-27017 (SQLite underneath) now and then fails a write under
                                // two nodes' load ("Failed to get last row id"): the store says
                                // `unavailable`, never a false success, and the documented
                                // recovery is to resend with the same command id.
                                Err(CommandError::Store(e)) => {
                                    eprintln!("add unavailable, resending: {e}");
                                    retried = true;
                                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                                }
                                Err(e) => panic!("add failed: {e}"),
                            }
                        }
                        ids.push(command_id);
                    }
                    ids
                }
            }));
        }
    }
    let mut command_ids = Vec::new();
    for task in tasks {
        command_ids.extend(task.await.unwrap());
    }
    let total = (2 * WRITERS * ADDS) as u64;

    // Then every add is in the log exactly once, at versions 2..=total+1 with no gap,
    let log = store_a.events(id, 0, usize::MAX).await.unwrap();
    assert_eq!(
        log.iter().map(|e| e.version).collect::<Vec<_>>(),
        (1..=total + 1).collect::<Vec<_>>(),
        "one event per version, no gap"
    );
    let logged: HashSet<CommandId> = log[1..].iter().map(|e| e.command_id).collect();
    assert_eq!(logged.len(), command_ids.len(), "no command applied twice");
    assert!(command_ids.iter().all(|c| logged.contains(c)));
    // and both nodes agree on the amount, which counts every add (no lost update),
    for store in [&store_a, &store_b] {
        let state = store.load(id).await.unwrap().state().unwrap();
        assert_eq!((state.version, state.balance.amount), (total + 1, total));
    }
    // and the subscriber on node A heard every version, with the state the log has there.
    let seen = collect_until(&mut rx, |seen| {
        let versions: HashSet<u64> = seen.iter().map(|c| c.version()).collect();
        (2..=total + 1).all(|v| versions.contains(&v))
    })
    .await;
    let by_version: BTreeMap<u64, &Arc<Change>> = seen.iter().map(|c| (c.version(), c)).collect();
    for (version, change) in by_version.range(2..) {
        let expected = replay(None, log.iter().take(*version as usize)).unwrap();
        assert_eq!(
            change.state, expected,
            "the change at v{version} matches the log"
        );
    }
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_owner_subscriber_hears_of_a_resource_created_on_the_other_node() {
    // Given two nodes, and on node A a subscriber to everything bob owns,
    let (store_a, db) = mongo_support::fresh_store("two_nodes_owner").await;
    let store_b = mongo_support::another_node(&db).await;
    let a = node_on(store_a).await;
    let b = node_on(store_b).await;
    let mut rx = a.hub().subscribe_owner(&PlayerId::new("bob"));

    // When a resource is created for bob through node B and then credited there,
    let id = create(&b, "bob").await.resource_id;
    let seen = collect_until(&mut rx, |seen| seen.iter().any(|c| c.resource_id == id)).await;
    assert_eq!(seen.last().unwrap().owner, PlayerId::new("bob"));
    let reply = add_one(&b, id, CommandId::new()).await;

    // Then node A's subscriber hears of both, the second at the version node B answered.
    let seen = collect_until(&mut rx, |seen| {
        seen.iter()
            .any(|c| c.resource_id == id && c.version() == reply.version)
    })
    .await;
    let last = seen.last().unwrap();
    assert_eq!(last.view.amount, 1);
    a.shutdown().await;
    b.shutdown().await;
}
