//! The seed scenario end to end on the core: seven steps, the fifth refused by the lock.
//!
//! Guards against: the demo every reader runs first drifting from the seed (a step that should
//! fail succeeding, or amounts that no longer add up), and a read model that lags the log.

use warden_testkit as support;

use support::TestNode;
use warden_core::domain::{ClientResource, Principal, ResourceEvent};
use warden_core::store::EventStore;
use warden_net::Coded;
use warden_protocol::seed::{Expect, SEED_PLAYER, SEED_STEPS};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_seed_scenario_runs_as_the_seed_says() {
    // A clock that does not move: no regeneration between steps, so the seed's exact amounts.
    let t = TestNode::embedded();
    let (node, store) = (t.node, &t.store);

    let report = warden::demo::run(&node).await.unwrap();

    assert_eq!(report.steps.len(), 7);
    assert_eq!(report.steps.len(), SEED_STEPS.len());
    for (i, (step, seed)) in report.steps.iter().zip(&SEED_STEPS).enumerate() {
        assert!(
            step.as_expected(),
            "step {} ({}): {}",
            i + 1,
            step.title,
            step.describe()
        );
        // Exactly what the seed's data says: the amount and the lock, or the refusal's code.
        assert_eq!(step.title, seed.title);
        match (&step.outcome, seed.expect) {
            (Ok(reply), Expect::Applied { amount, locked }) => assert_eq!(
                (reply.view().amount, reply.view().locked),
                (amount, locked),
                "step {}",
                i + 1
            ),
            (Err(e), Expect::Refused(code)) => assert_eq!(e.code(), code, "step {}", i + 1),
            (outcome, expect) => panic!("step {}: {outcome:?}, expected {expect:?}", i + 1),
        }
    }
    let outcomes: Vec<Result<u64, &str>> = report
        .steps
        .iter()
        .map(|s| match &s.outcome {
            Ok(reply) => Ok(reply.resource.balance.amount),
            Err(e) => Err(e.code().as_str()),
        })
        .collect();
    assert_eq!(
        outcomes,
        vec![
            Ok(1000),
            Ok(800),
            Ok(1300),
            Ok(1300),
            Err("locked"),
            Ok(1300),
            Ok(1200)
        ],
        "create, allocate 200, add 500, lock, refused allocate, unlock, allocate 100"
    );

    // The read model: one resource of player123's, caught up to the last step.
    assert_eq!(report.read_models.len(), 1);
    let view: &ClientResource = &report.read_models[0];
    assert_eq!(view.id, report.resource_id);
    assert_eq!(view.owner, Principal::player(SEED_PLAYER).player);
    assert_eq!(SEED_PLAYER, "player123");
    assert_eq!(
        (view.amount, view.max_amount, view.version, view.locked),
        (1200, 5000, 6, false)
    );
    assert_eq!(view.lock_reason, None);

    // The audit trail holds six events; the refused allocate left none.
    let log = store
        .events(report.resource_id, 0, usize::MAX)
        .await
        .unwrap();
    let kinds: Vec<&str> = log.iter().map(|e| e.event.type_name()).collect();
    assert_eq!(
        kinds,
        vec![
            "ResourceCreated",
            "ResourceAllocated",
            "ResourceAdded",
            "ResourceLocked",
            "ResourceUnlocked",
            "ResourceAllocated"
        ]
    );
    assert!(matches!(
        &log[3].event,
        ResourceEvent::ResourceLocked { reason, .. } if reason == "Maintenance"
    ));
    node.shutdown().await;
}
