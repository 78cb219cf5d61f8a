//! Idempotency: a command id is applied at most once, and a retry gets the first outcome.
//!
//! Guards against: a client that retries after a dropped connection being charged twice, a
//! retried allocate that succeeded being told "insufficient" because it already spent the gold,
//! a retried create making a second resource, and a command id that silently means two things.

use warden_testkit as support;

use support::{
    TestNode, add, alice, allocate, create_gold, execute_id, given_fixed, request, request_id,
};
use warden_core::actor::{CommandError, CommandReply, CommandRequest, Registry};
use warden_core::domain::{AllocateResource, Command, CommandId, Principal, ResourceId};
use warden_core::store::EventStore;
use warden_net::Coded;
use warden_protocol::ErrorCode;

/// Alice's resource holding `amount`, with no regeneration.
async fn given(registry: &Registry, amount: u64) -> ResourceId {
    given_fixed(registry, "alice", amount, 10_000).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_command_id_twice_applies_once_and_answers_the_same() {
    let t = TestNode::embedded();
    let (node, store) = (t.node, &t.store);
    let id = given(node.registry(), 1000).await;

    let cid = CommandId::new();
    let first = execute_id(node.registry(), cid, &alice(), add(id, 10))
        .await
        .unwrap();
    let again = execute_id(node.registry(), cid, &alice(), add(id, 10))
        .await
        .unwrap();

    assert!(!first.duplicate);
    assert!(
        again.duplicate,
        "the retry is marked as the original outcome"
    );
    assert_eq!(again.version, first.version);
    assert_eq!(again.resource, first.resource);
    assert_eq!(again.events, first.events);
    assert_eq!(store.head(id).await.unwrap(), 2, "applied once");
    assert_eq!(
        store
            .load(id)
            .await
            .unwrap()
            .state()
            .unwrap()
            .balance
            .amount,
        1010
    );
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_answers_the_original_outcome_even_after_later_changes() {
    let t = TestNode::embedded();
    let (node, store) = (t.node, &t.store);
    let id = given(node.registry(), 1000).await;

    let cid = CommandId::new();
    let first = execute_id(node.registry(), cid, &alice(), add(id, 10))
        .await
        .unwrap();
    execute_id(node.registry(), CommandId::new(), &alice(), add(id, 1))
        .await
        .unwrap();
    execute_id(node.registry(), CommandId::new(), &alice(), add(id, 1))
        .await
        .unwrap();
    let again = execute_id(node.registry(), cid, &alice(), add(id, 10))
        .await
        .unwrap();

    assert!(again.duplicate);
    assert_eq!(
        again.version, 2,
        "the version of the original, not the head"
    );
    assert_eq!(
        again.resource, first.resource,
        "the state right after the original"
    );
    assert_eq!(store.head(id).await.unwrap(), 4);
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_allocate_that_succeeded_stays_a_success_when_the_balance_is_now_too_low() {
    let t = TestNode::embedded();
    let (node, store) = (t.node, &t.store);
    let id = given(node.registry(), 100).await;

    let cid = CommandId::new();
    let first = execute_id(node.registry(), cid, &alice(), allocate(id, 80))
        .await
        .unwrap();
    assert_eq!(first.resource.balance.amount, 20);
    // A fresh allocate of 80 would now be refused ...
    let fresh = execute_id(
        node.registry(),
        CommandId::new(),
        &alice(),
        allocate(id, 80),
    )
    .await;
    assert_eq!(fresh.unwrap_err().code(), ErrorCode::Insufficient);
    // ... but the retry of the one that succeeded gets its success back.
    let again = execute_id(node.registry(), cid, &alice(), allocate(id, 80))
        .await
        .unwrap();
    assert!(again.duplicate);
    assert_eq!((again.version, again.resource.balance.amount), (2, 20));
    assert_eq!(store.head(id).await.unwrap(), 2, "nothing spent twice");
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeated_create_returns_the_same_resource_and_creates_nothing() {
    let t = TestNode::embedded();
    let (node, store) = (t.node, &t.store);

    let cid = CommandId::new();
    let first = execute_id(node.registry(), cid, &alice(), create_gold())
        .await
        .unwrap();
    let again = execute_id(node.registry(), cid, &alice(), create_gold())
        .await
        .unwrap();

    assert!(again.duplicate);
    assert_eq!(again.resource_id, first.resource_id);
    assert_eq!(again.resource, first.resource);
    assert_eq!(
        store.resource_ids().await.unwrap(),
        vec![first.resource_id],
        "exactly one resource exists"
    );
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reusing_a_command_id_on_another_resource_is_refused() {
    let t = TestNode::embedded();
    let (node, store) = (t.node, &t.store);
    let one = given(node.registry(), 100).await;
    let other = given(node.registry(), 100).await;

    let cid = CommandId::new();
    execute_id(node.registry(), cid, &alice(), add(one, 1))
        .await
        .unwrap();
    // Whether the command would succeed on the other resource ...
    let r = execute_id(node.registry(), cid, &alice(), add(other, 1))
        .await
        .unwrap_err();
    assert_eq!(r.code(), ErrorCode::CommandIdReused);
    // ... or be refused there.
    let r = execute_id(node.registry(), cid, &alice(), allocate(other, 1_000))
        .await
        .unwrap_err();
    assert_eq!(r.code(), ErrorCode::CommandIdReused);
    assert_eq!(
        store.head(other).await.unwrap(),
        1,
        "nothing written to the other resource"
    );
    assert_eq!(store.head(one).await.unwrap(), 2);
    // A create under an id that an add used is not a repeat of that add: it must not answer
    // with the add's resource as if it had been created.
    let r = execute_id(node.registry(), cid, &alice(), create_gold())
        .await
        .unwrap_err();
    assert_eq!(r.code(), ErrorCode::CommandIdReused);
    assert_eq!(
        store.resource_ids().await.unwrap().len(),
        2,
        "nothing created"
    );
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotency_holds_across_a_restart() {
    let t = TestNode::embedded();
    let create_id = CommandId::new();
    let created = execute_id(t.registry(), create_id, &alice(), create_gold())
        .await
        .unwrap();
    let id = created.resource_id;
    let cid = CommandId::new();
    let first = execute_id(t.registry(), cid, &alice(), allocate(id, 999))
        .await
        .unwrap();
    let t = t.restart(|_| {}).await;
    let (node, store) = (t.node, &t.store);
    let again = execute_id(node.registry(), cid, &alice(), allocate(id, 999))
        .await
        .unwrap();
    assert!(again.duplicate);
    assert_eq!(
        (again.version, &again.resource),
        (first.version, &first.resource)
    );
    let recreated = execute_id(node.registry(), create_id, &alice(), create_gold())
        .await
        .unwrap();
    assert!(recreated.duplicate);
    assert_eq!(recreated.resource_id, id);
    assert_eq!(store.head(id).await.unwrap(), 2);
    assert_eq!(store.resource_ids().await.unwrap(), vec![id]);
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_player_replaying_a_command_id_learns_nothing() {
    // Given alice's allocate under command id C
    let t = TestNode::embedded();
    let (node, store) = (t.node, &t.store);
    let id = given(node.registry(), 500).await;
    let c = CommandId::new();
    execute_id(node.registry(), c, &alice(), allocate(id, 100))
        .await
        .unwrap();
    // When mallory sends a command with the same id on alice's resource
    let replay = node
        .registry()
        .execute(request_id(
            c,
            &Principal::player("mallory"),
            allocate(id, 100),
        ))
        .await;
    // Then mallory is refused without alice's state, and nothing changed
    assert!(
        matches!(replay, Err(CommandError::CommandIdReused)),
        "got {replay:?}"
    );
    assert_eq!(store.head(id).await.unwrap(), 2);
    node.shutdown().await;
}

/// Runs every request at once (all in the resource's mailbox together) and counts the outcomes:
/// (applied first time, duplicates, conflicts, other errors).
async fn all_at_once(registry: &Registry, requests: Vec<CommandRequest>) -> (u32, u32, u32, u32) {
    count(&run_at_once(registry, requests).await)
}

/// Runs every request at once; the outcomes in request order.
async fn run_at_once(
    registry: &Registry,
    requests: Vec<CommandRequest>,
) -> Vec<Result<CommandReply, CommandError>> {
    futures::future::join_all(requests.into_iter().map(|r| registry.execute(r))).await
}

/// (applied first time, duplicates, conflicts, other errors).
fn count(outcomes: &[Result<CommandReply, CommandError>]) -> (u32, u32, u32, u32) {
    let mut counts = (0, 0, 0, 0);
    for outcome in outcomes {
        match outcome {
            Ok(reply) if reply.duplicate => counts.1 += 1,
            Ok(_) => counts.0 += 1,
            Err(CommandError::Contention) => counts.2 += 1,
            Err(e) => {
                eprintln!("{e}");
                counts.3 += 1
            }
        }
    }
    counts
}

// Guards against: copies of one command sent while the first is still in flight (a client
// resending on a timeout) getting `conflict` instead of the first outcome.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_copies_in_flight_at_once_apply_once_and_all_get_that_outcome() {
    let t = TestNode::embedded();
    let (node, store) = (t.node, &t.store);
    let id = given(node.registry(), 1000).await;

    let cid = CommandId::new();
    let copies = (0..20)
        .map(|_| request_id(cid, &alice(), allocate(id, 7)))
        .collect();
    assert_eq!(all_at_once(node.registry(), copies).await, (1, 19, 0, 0));
    assert_eq!(store.head(id).await.unwrap(), 2, "applied once");
    let state = store.load(id).await.unwrap().state().unwrap();
    assert_eq!(state.balance.amount, 993);
    node.shutdown().await;
}

// Guards against: one resend inside a pipelined run breaking the store's chain, so every later
// command of the run gets a conflict and the actor backs off as if the resource were contended
// (after a crash, clients resending to a hot resource took seconds and got spurious conflicts).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resends_of_committed_commands_mixed_with_new_ones_settle_without_conflicts() {
    let t = TestNode::embedded();
    let (node, store) = (t.node, &t.store);
    let id = given(node.registry(), 1000).await;

    // 200 commands committed, whose replies the clients never saw.
    let committed: Vec<CommandRequest> = (0..200)
        .map(|n| {
            let command = if n % 2 == 0 {
                add(id, 1)
            } else {
                allocate(id, 1)
            };
            request(&alice(), command)
        })
        .collect();
    let first = run_at_once(node.registry(), committed.clone()).await;
    assert_eq!(count(&first), (200, 0, 0, 0));
    assert_eq!(store.head(id).await.unwrap(), 201);

    // They resend all of them, interleaved with 200 new commands.
    let mut mixed = Vec::new();
    for (n, resend) in committed.into_iter().enumerate() {
        mixed.push(resend);
        let command = if n % 2 == 0 {
            add(id, 2)
        } else {
            allocate(id, 2)
        };
        mixed.push(request(&alice(), command));
    }
    let outcomes = run_at_once(node.registry(), mixed).await;
    assert_eq!(count(&outcomes), (200, 200, 0, 0));
    assert_eq!(store.head(id).await.unwrap(), 401, "each new command once");
    // Each resend got exactly its first outcome: version, state and events.
    for (resend, original) in outcomes.iter().step_by(2).zip(&first) {
        let (resend, original) = (resend.as_ref().unwrap(), original.as_ref().unwrap());
        assert!(resend.duplicate);
        assert_eq!(
            (resend.version, &resend.resource, &resend.events),
            (original.version, &original.resource, &original.events)
        );
    }
    let state = store.load(id).await.unwrap().state().unwrap();
    assert_eq!(state.balance.amount, 1000);
    node.shutdown().await;
}

// Guards against: a client bug that reuses a command id for a different command (another
// amount, reason or duration) silently getting the first command's outcome.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_id_for_a_different_command_is_refused_as_reused() {
    let t = TestNode::embedded();
    let (node, store) = (t.node, &t.store);
    let id = given(node.registry(), 1000).await;
    let r = node.registry();

    let spend = CommandId::new();
    execute_id(r, spend, &alice(), allocate(id, 10))
        .await
        .unwrap();
    let other_amount = execute_id(r, spend, &alice(), allocate(id, 11)).await;
    assert!(matches!(other_amount, Err(CommandError::CommandIdReused)));
    let other_kind = execute_id(r, spend, &alice(), add(id, 10)).await;
    assert!(matches!(other_kind, Err(CommandError::CommandIdReused)));
    let other_reason = execute_id(
        r,
        spend,
        &alice(),
        Command::Allocate(AllocateResource {
            resource_id: id,
            amount: 10,
            reason: "another".into(),
        }),
    )
    .await;
    assert!(matches!(other_reason, Err(CommandError::CommandIdReused)));

    let lock = CommandId::new();
    let lock_for = |ms| {
        Command::Lock(warden_core::domain::LockResource {
            resource_id: id,
            reason: "raid".into(),
            duration_ms: ms,
        })
    };
    execute_id(r, lock, &alice(), lock_for(1_000))
        .await
        .unwrap();
    assert!(matches!(
        execute_id(r, lock, &alice(), lock_for(2_000)).await,
        Err(CommandError::CommandIdReused)
    ));
    // The exact resend is still a duplicate, and nothing was applied twice.
    assert!(
        execute_id(r, lock, &alice(), lock_for(1_000))
            .await
            .unwrap()
            .duplicate
    );
    assert!(
        execute_id(r, spend, &alice(), allocate(id, 10))
            .await
            .unwrap()
            .duplicate
    );
    assert_eq!(store.head(id).await.unwrap(), 3);
    node.shutdown().await;
}
