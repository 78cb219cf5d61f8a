//! The MongoDB backend at a distance: group commit and bounded polling, with MongoDB behind a
//! latency proxy where it matters. Guards against one command's failure in a batched insert being
//! blamed on (or hidden from) another command, against the rest of an actor's chain committing
//! after a link failed (a lost update or a gap), and against a relay whose queries grow with the
//! number of resources it watches.
#![cfg(feature = "mongodb")]

use warden_testkit as support;

use futures::{StreamExt, TryStreamExt};
use std::sync::Arc;
use std::time::Duration;
use support::mongo::{self, PATIENCE, node_on};
use support::{create_fixed, execute, service, wait_for};
use warden_core::domain::{
    Balance, CommandId, PlayerId, ResourceEvent, ResourceId, ServerResource, Timestamp, replay,
    stamp,
};
use warden_core::hub::Hub;
use warden_core::relay::{Relay, RelayConfig};
use warden_core::store::{AppendError, AppendRequest, EventStore, ReadModelStore};
use warden_store_mongo::MongoStore;

fn created() -> ResourceEvent {
    ResourceEvent::ResourceCreated {
        name: None,
        owner: PlayerId::new("alice"),
        resource_type: "gold".into(),
        max_amount: 5000,
        regen_milli: 0,
        balance: balance(0),
        by: PlayerId::new("alice"),
    }
}

fn added(total: u64) -> ResourceEvent {
    ResourceEvent::ResourceAdded {
        amount: 1,
        reason: "group commit".into(),
        balance: balance(total),
        by: PlayerId::new("alice"),
    }
}

fn balance(amount: u64) -> Balance {
    Balance {
        amount,
        regen_carry: 0,
        regen_at: Timestamp(1_000),
    }
}

/// The append of `event` by `command_id` on top of `base` (None: a create).
fn append(
    id: ResourceId,
    base: Option<&ServerResource>,
    command_id: CommandId,
    event: ResourceEvent,
) -> AppendRequest {
    let after = base.map_or(0, |s| s.version);
    let events = stamp(
        id,
        after,
        command_id,
        warden_core::domain::Role::Player,
        Timestamp(1_000),
        vec![event],
    );
    let state = replay(base.cloned(), &events).expect("the events lead to a state");
    AppendRequest {
        resource_id: id,
        expected_version: after,
        command_id,
        events,
        state,
    }
}

/// Creates a resource through `store`; returns its state at version 1.
async fn create(store: &MongoStore) -> ServerResource {
    let req = append(ResourceId::new(), None, CommandId::new(), created());
    let state = req.state.clone();
    store.append(req).await.expect("create commits");
    state
}

/// Commits one add on top of `base` through `store` with `command_id`; returns the new state.
async fn add(store: &MongoStore, base: &ServerResource, command_id: CommandId) -> ServerResource {
    let req = append(
        base.id,
        Some(base),
        command_id,
        added(base.balance.amount + 1),
    );
    let state = req.state.clone();
    store.append(req).await.expect("add commits");
    state
}

// A current-thread runtime: every append below is queued before the writer task first runs, so
// they all land in one batch (one unordered insert), which is what this test is about.
#[tokio::test]
async fn each_command_of_an_unordered_batch_gets_its_own_outcome() {
    // Given two nodes 2 ms away from MongoDB, and seven resources created through node A,
    let proxy = mongo::proxy_with_rtt(Duration::from_millis(2)).await;
    let db = mongo::fresh_db_name("group_commit_batch");
    let a = mongo::node_behind(&proxy, &db).await;
    let b = mongo::node_behind(&proxy, &db).await;
    let mut r = Vec::new();
    for _ in 0..7 {
        r.push(create(&a).await);
    }
    // of which r[2] and r[6] took one more command through node A (their ids are reused below),
    let (old2, old6) = (CommandId::new(), CommandId::new());
    let r2_at2 = add(&a, &r[2], old2).await;
    let r6_at2 = add(&a, &r[6], old6).await;
    // and r[1] and r[4] were moved on by node B, which node A has not seen.
    add(&b, &r[1], CommandId::new()).await;
    add(&b, &r[4], CommandId::new()).await;

    // When node A is asked at once to commit:
    let before = a.round_trips();
    let r3_chain_first = append(r[3].id, Some(&r[3]), CommandId::new(), added(1));
    let r3_chain_second = append(
        r[3].id,
        Some(&r3_chain_first.state),
        CommandId::new(),
        added(2),
    );
    let r4_chain_first = append(r[4].id, Some(&r[4]), CommandId::new(), added(1));
    let r4_chain_second = append(
        r[4].id,
        Some(&r4_chain_first.state),
        CommandId::new(),
        added(2),
    );
    let r6_chain_first = append(r[6].id, Some(&r6_at2), old6, added(2));
    let r6_chain_second = append(
        r[6].id,
        Some(&r6_chain_first.state),
        CommandId::new(),
        added(3),
    );
    let new_id = ResourceId::new();
    let (fresh, stale, repeat, chain_ok, chain_conflict, create_new, chain_repeat) = tokio::join!(
        // an add on r[0] (fresh),
        a.append(append(r[0].id, Some(&r[0]), CommandId::new(), added(1))),
        // an add on r[1] decided on version 1 (stale: node B wrote version 2),
        a.append(append(r[1].id, Some(&r[1]), CommandId::new(), added(1))),
        // the command that made r[2]'s version 2, again (a client's retry),
        a.append(append(r[2].id, Some(&r2_at2), old2, added(2))),
        // a chain of two adds on r[3],
        a.append_many(vec![r3_chain_first, r3_chain_second]),
        // a chain of two adds on r[4] whose first is stale,
        a.append_many(vec![r4_chain_first, r4_chain_second]),
        // a create,
        a.append(append(new_id, None, CommandId::new(), created())),
        // and a chain on r[6] whose first is a repeat of an applied command,
        a.append_many(vec![r6_chain_first, r6_chain_second]),
    );
    let trips = a.round_trips().since(&before);

    // Then each command has its own outcome:
    assert_eq!(fresh.unwrap().last_version, 2, "the fresh add commits");
    assert!(
        matches!(
            stale,
            Err(AppendError::Conflict {
                expected: 1,
                actual: 2
            })
        ),
        "the stale add conflicts: {stale:?}"
    );
    match repeat {
        Err(AppendError::Duplicate(original)) => {
            assert_eq!(original.command_id, old2);
            assert_eq!((original.first_version, original.last_version), (2, 2));
        }
        other => panic!("the retry is a duplicate, got {other:?}"),
    }
    let versions: Vec<u64> = chain_ok
        .iter()
        .map(|o| o.as_ref().expect("both links commit").last_version)
        .collect();
    assert_eq!(versions, vec![2, 3], "the chain commits in order");
    assert!(
        matches!(chain_conflict[0], Err(AppendError::Conflict { .. })),
        "the stale link conflicts"
    );
    assert!(
        matches!(chain_conflict[1], Err(AppendError::Conflict { .. })),
        "after a failed link nothing of the chain commits (version 2 is a boundary, yet it was \
         decided on a state that never existed): {:?}",
        chain_conflict[1]
    );
    assert_eq!(create_new.unwrap().last_version, 1, "the create commits");
    assert!(matches!(chain_repeat[0], Err(AppendError::Duplicate(_))));
    assert!(
        matches!(chain_repeat[1], Err(AppendError::Conflict { .. })),
        "after a repeated link nothing of the chain commits (it would leave a gap): {:?}",
        chain_repeat[1]
    );
    // and the log holds exactly that, gapless,
    let expected_heads = [
        (r[0].id, 2),
        (r[1].id, 2),
        (r[2].id, 2),
        (r[3].id, 3),
        (r[4].id, 2),
        (new_id, 1),
        (r[6].id, 2),
    ];
    for (id, head) in expected_heads {
        let log = a.events(id, 0, usize::MAX).await.unwrap();
        assert_eq!(
            log.iter().map(|e| e.version).collect::<Vec<_>>(),
            (1..=head).collect::<Vec<_>>(),
            "log of {id}"
        );
    }
    // with the views written before the answers,
    assert_eq!(a.get(r[3].id).await.unwrap().map(|v| v.version), Some(3));
    assert_eq!(a.get(new_id).await.unwrap().map(|v| v.version), Some(1));
    // and the whole batch took one unordered insert, plus one ordered insert for the second link
    // of the chain that went on.
    assert_eq!(trips.inserts, 2, "{trips:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn polling_5000_watched_resources_costs_at_most_10_queries_a_tick() {
    // Given 5,000 resources of 100 owners, created through node B,
    let (store_a, db) = mongo::fresh_store("relay_polling").await;
    let store_b = mongo::another_node(&db).await;
    let node_b = Arc::new(node_on(store_b.clone()));
    let creates = (0..5_000).map(|i| {
        let node_b = node_b.clone();
        async move {
            let owner = format!("p{}", i % 100);
            execute(
                node_b.registry(),
                &service(),
                create_fixed(&owner, 0, 1_000),
            )
            .await
            .map(|reply| reply.resource_id)
        }
    });
    let ids: Vec<ResourceId> = futures::stream::iter(creates)
        .buffer_unordered(500)
        .try_collect()
        .await
        .expect("creates succeed");
    // and on node A (which writes nothing) a polling relay for a hub where each resource and
    // each owner has a subscriber,
    let hub = Arc::new(Hub::new());
    let mut watchers: Vec<_> = ids.iter().map(|id| hub.subscribe_resource(*id)).collect();
    let _owners: Vec<_> = (0..100)
        .map(|i| hub.subscribe_owner(&PlayerId::new(format!("p{i}"))))
        .collect();
    let relay = Relay::start(
        store_a.clone(),
        hub.clone(),
        RelayConfig {
            change_streams: false,
            ..RelayConfig::default()
        },
    );
    // once the relay has announced every resource,
    for rx in &mut watchers {
        tokio::time::timeout(PATIENCE, rx.recv())
            .await
            .expect("the relay announces each resource")
            .unwrap();
    }

    // When node B adds to 50 of them while node A's relay polls for at least 20 ticks,
    let before = store_a.round_trips();
    let first_tick = relay.ticks();
    for id in &ids[..50] {
        execute(node_b.registry(), &service(), support::add(*id, 1))
            .await
            .unwrap();
    }
    // (each watcher of those 50 hears its add)
    for rx in &mut watchers[..50] {
        loop {
            let change = tokio::time::timeout(PATIENCE, rx.recv())
                .await
                .expect("the relay delivers the add")
                .unwrap();
            if change.version() == 2 {
                break;
            }
        }
    }
    wait_for("20 more relay ticks", PATIENCE, || {
        relay.ticks() >= first_tick + 20
    })
    .await;
    let trips = store_a.round_trips().since(&before);
    let ticks = relay.ticks() - first_tick;

    println!(
        "relay: {} queries in {ticks} ticks: {trips:?}",
        trips.total()
    );
    // Then the relay sent at most 10 queries per tick (a tick in progress may count once more).
    assert!(
        trips.total() <= 10 * (ticks + 1),
        "{} queries in {ticks} ticks: {trips:?}",
        trips.total()
    );
    relay.stop().await;
    Arc::into_inner(node_b)
        .expect("nothing else holds node B")
        .shutdown()
        .await;
}
