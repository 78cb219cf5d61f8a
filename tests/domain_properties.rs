//! Properties of the rules over arbitrary histories, and of the actor and store that run them.
//!
//! Guards against: a sequence of commands nobody thought of (huge amounts, zero, a clock that
//! steps back, the wrong principal) driving a resource past its max, out of step with its
//! version, or into a state that replaying its log does not reproduce; and regeneration that
//! depends on how often it is observed.

use warden_testkit as support;

use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;
use std::sync::Arc;
use support::{DataDir, T0, TestNode, alice, bob, execute, service};
use warden_core::actor::CommandReply;
use warden_core::domain::{
    AddResource, AllocateResource, Balance, Catalogue, Command, CommandId, CreateResource,
    EventEnvelope, LockResource, MAX_LOCK_MS, MICRO_PER_UNIT, Principal, ResourceEvent, ResourceId,
    ResourceParams, ServerResource, Timestamp, UnlockResource, accrue, decide, decide_create,
    replay, stamp,
};
use warden_core::store::EventStore;
use warden_net::Coded;
use warden_protocol::ErrorCode;
use warden_store_embedded::EmbeddedStore;

#[derive(Clone, Copy, Debug)]
enum Who {
    Owner,
    OtherPlayer,
    Service,
    Spectator,
}

impl Who {
    fn principal(self) -> Principal {
        match self {
            Who::Owner => alice(),
            Who::OtherPlayer => bob(),
            Who::Service => service(),
            Who::Spectator => Principal::spectator("eve"),
        }
    }
}

#[derive(Clone, Debug)]
enum Op {
    Allocate(u64),
    Add(u64),
    Lock(u64),
    Unlock,
    Expire,
}

#[derive(Clone, Debug)]
struct Step {
    /// Milliseconds the clock moves before the command; negative is a clock stepping back.
    dt: i64,
    who: Who,
    op: Op,
}

impl Op {
    fn command(&self, id: ResourceId) -> Command {
        match *self {
            Op::Allocate(amount) => Command::Allocate(AllocateResource {
                resource_id: id,
                amount,
                reason: "prop".into(),
            }),
            Op::Add(amount) => Command::Add(AddResource {
                resource_id: id,
                amount,
                reason: "prop".into(),
            }),
            Op::Lock(duration_ms) => Command::Lock(LockResource {
                resource_id: id,
                reason: "prop".into(),
                duration_ms,
            }),
            Op::Unlock => Command::Unlock(UnlockResource { resource_id: id }),
            Op::Expire => Command::ExpireLock(id),
        }
    }
}

fn amount() -> impl Strategy<Value = u64> {
    prop_oneof![
        Just(0u64),
        1..20u64,
        1..2_000u64,
        Just(u64::MAX),
        any::<u64>(),
    ]
}

fn duration() -> impl Strategy<Value = u64> {
    prop_oneof![
        Just(0u64),
        1..120_000u64,
        Just(MAX_LOCK_MS),
        Just(MAX_LOCK_MS + 1),
        any::<u64>(),
    ]
}

fn who() -> impl Strategy<Value = Who> {
    prop_oneof![
        6 => Just(Who::Owner),
        2 => Just(Who::Service),
        1 => Just(Who::OtherPlayer),
        1 => Just(Who::Spectator),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => amount().prop_map(Op::Allocate),
        4 => amount().prop_map(Op::Add),
        2 => duration().prop_map(Op::Lock),
        1 => Just(Op::Unlock),
        1 => Just(Op::Expire),
    ]
}

fn dt() -> impl Strategy<Value = i64> {
    prop_oneof![
        3 => Just(0i64),
        6 => 0..10_000i64,
        1 => -10_000..0i64,
        1 => 0..10_000_000i64,
    ]
}

fn step() -> impl Strategy<Value = Step> {
    (dt(), who(), op()).prop_map(|(dt, who, op)| Step { dt, who, op })
}

/// A resource alice owns: catalogue gold, or custom parameters from a service.
fn params() -> impl Strategy<Value = Option<ResourceParams>> {
    prop_oneof![
        Just(None),
        (1..10_000u64, 0..=100u64, 0..5_000u64).prop_map(|(max, pct, regen)| Some(
            ResourceParams {
                initial_amount: max * pct / 100,
                max_amount: max,
                regen_milli: regen,
            }
        )),
        Just(Some(ResourceParams {
            initial_amount: u64::MAX - 10,
            max_amount: u64::MAX,
            regen_milli: 1_000_000,
        })),
    ]
}

fn create(params: Option<ResourceParams>) -> (Principal, CreateResource) {
    let who = if params.is_some() {
        Who::Service
    } else {
        Who::Owner
    };
    (
        who.principal(),
        CreateResource {
            name: None,
            resource_type: "gold".into(),
            owner: Some(alice().player),
            params,
        },
    )
}

/// `cases` cases; a failing input is kept in `tests/regressions/` (this test has no lib.rs for
/// proptest's default location) so it is replayed first next time.
fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource("regressions"))),
        ..ProptestConfig::default()
    }
}

/// The invariants every state must hold.
fn check_invariants(s: &ServerResource, events_so_far: usize) -> Result<(), TestCaseError> {
    prop_assert!(
        s.balance.amount <= s.max_amount,
        "amount {} > max {}",
        s.balance.amount,
        s.max_amount
    );
    prop_assert!(
        u64::from(s.balance.regen_carry) < MICRO_PER_UNIT,
        "carry {} is a whole unit",
        s.balance.regen_carry
    );
    if s.balance.amount == s.max_amount {
        prop_assert_eq!(s.balance.regen_carry, 0, "a full resource banks no carry");
    }
    prop_assert_eq!(
        s.version,
        events_so_far as u64,
        "version = number of events"
    );
    Ok(())
}

/// Runs `steps` through the pure rules; returns the live state and the whole log.
fn run_pure(
    params: Option<ResourceParams>,
    steps: &[Step],
) -> Result<(ServerResource, Vec<EventEnvelope>), TestCaseError> {
    let id = ResourceId::new();
    let mut now = Timestamp(T0);
    let (creator, cmd) = create(params);
    let created = decide_create(&Catalogue::default(), &creator, &cmd, now).expect("valid create");
    let mut log = stamp(
        id,
        0,
        CommandId::new(),
        warden_core::domain::Role::Player,
        now,
        vec![created],
    );
    let mut live = replay(None, &log).expect("created");
    check_invariants(&live, log.len())?;
    for step in steps {
        now = Timestamp(now.0 + step.dt);
        let cmd = step.op.command(id);
        match decide(&live, &step.who.principal(), &cmd, now) {
            Ok(events) => {
                prop_assert!(
                    matches!(step.who, Who::Owner | Who::Service),
                    "{:?} must not get events through: {:?}",
                    step.who,
                    events
                );
                if let (Op::Allocate(n), Some(ResourceEvent::ResourceAllocated { balance, .. })) =
                    (&step.op, events.last())
                {
                    // What was spent is exactly what the regenerated balance lost.
                    let before = accrue(live.balance, live.max_amount, live.regen_milli, now);
                    prop_assert_eq!(balance.amount + n, before.amount);
                    prop_assert!(live.active_lock(now).is_none(), "spent through a lock");
                }
                let stamped = stamp(
                    id,
                    live.version,
                    CommandId::new(),
                    warden_core::domain::Role::Player,
                    now,
                    events,
                );
                live = replay(Some(live), &stamped).expect("still exists");
                log.extend(stamped);
            }
            Err(rejection) => {
                if matches!(step.who, Who::Spectator | Who::OtherPlayer) {
                    prop_assert_eq!(rejection.code(), ErrorCode::Forbidden);
                }
            }
        }
        check_invariants(&live, log.len())?;
    }
    Ok((live, log))
}

proptest! {
    #![proptest_config(config(512))]

    /// Any history keeps 0 ≤ amount ≤ max and version = number of events, and only the owner or
    /// a service ever changes the resource.
    #[test]
    fn any_history_keeps_the_invariants(params in params(), steps in prop::collection::vec(step(), 0..60)) {
        run_pure(params, &steps)?;
    }

    /// Replaying the log (also after the storage encoding, and from any snapshot point)
    /// reproduces exactly the live state.
    #[test]
    fn replaying_the_log_reproduces_the_live_state(
        params in params(),
        steps in prop::collection::vec(step(), 0..60),
        cut in any::<prop::sample::Index>(),
    ) {
        let (live, log) = run_pure(params, &steps)?;
        prop_assert_eq!(replay(None, &log), Some(live.clone()));

        let stored: Vec<EventEnvelope> = log
            .iter()
            .map(|e| rmp_serde::from_slice(&rmp_serde::to_vec_named(e).unwrap()).unwrap())
            .collect();
        prop_assert_eq!(replay(None, &stored), Some(live.clone()));

        let k = cut.index(log.len()) + 1;
        let snapshot = replay(None, &log[..k]);
        prop_assert_eq!(replay(snapshot, &log[k..]), Some(live));
    }

    /// Regeneration accrued over any split of an interval equals one accrual over the whole.
    #[test]
    fn regeneration_over_split_intervals_equals_one_interval(
        amount in 0..1_000_000u64,
        carry in 0..MICRO_PER_UNIT as u32,
        rate in 0..=warden_core::domain::MAX_REGEN_MILLI,
        mut cuts in prop::collection::vec(0..1_000_000i64, 0..20),
        total in 0..1_000_000i64,
    ) {
        let max = u64::MAX;
        let start = Balance { amount, regen_carry: carry, regen_at: Timestamp(T0) };
        cuts.retain(|c| *c <= total);
        cuts.sort_unstable();
        let mut b = start;
        for c in cuts {
            b = accrue(b, max, rate, Timestamp(T0 + c));
        }
        b = accrue(b, max, rate, Timestamp(T0 + total));
        prop_assert_eq!(b, accrue(start, max, rate, Timestamp(T0 + total)));
    }

    /// The same through the rules: adding 1 at any instants while below max yields exactly the
    /// regeneration of the whole interval plus what was added.
    #[test]
    fn regeneration_seen_through_commands_does_not_depend_on_how_often_they_come(
        rate in 1..5_000u64,
        mut times in prop::collection::vec(1..1_000_000i64, 1..40),
    ) {
        times.sort_unstable();
        let params = Some(ResourceParams { initial_amount: 0, max_amount: 1_000_000_000, regen_milli: rate });
        let steps: Vec<Step> = times
            .iter()
            .scan(0i64, |prev, t| {
                let dt = t - *prev;
                *prev = *t;
                Some(Step { dt, who: Who::Owner, op: Op::Add(1) })
            })
            .collect();
        let (live, _) = run_pure(params, &steps)?;
        let end = *times.last().unwrap();
        let whole = accrue(
            Balance { amount: 0, regen_carry: 0, regen_at: Timestamp(T0) },
            1_000_000_000,
            rate,
            Timestamp(T0 + end),
        );
        prop_assert_eq!(live.balance.amount, whole.amount + times.len() as u64);
        prop_assert_eq!(live.balance.regen_carry, whole.regen_carry);
    }
}

// ---------------------------------------------------------------- through actors and the store

/// Runs `steps` through a node on an embedded store; returns the node's store, the resource and
/// every successful reply.
async fn run_through_node(
    params: Option<ResourceParams>,
    steps: &[Step],
) -> (Arc<EmbeddedStore>, ResourceId, Vec<CommandReply>, DataDir) {
    let t = TestNode::embedded();
    let (creator, cmd) = create(params);
    let created = execute(t.registry(), &creator, Command::Create(cmd))
        .await
        .expect("create");
    let id = created.resource_id;
    let mut replies = vec![created];
    for step in steps {
        t.clock.advance_ms(step.dt);
        let outcome = execute(t.registry(), &step.who.principal(), step.op.command(id)).await;
        match outcome {
            Ok(reply) => replies.push(reply),
            Err(e) => assert!(
                e.code() != ErrorCode::Unavailable && e.code() != ErrorCode::Conflict,
                "{e}"
            ),
        }
    }
    t.node.shutdown().await;
    (t.store, id, replies, t.dir)
}

proptest! {
    // Each case opens a store and commits with fsync: few cases keep the file fast.
    #![proptest_config(config(16))]

    /// Random commands through a node: the log replays to the stored state and to what every
    /// successful reply said.
    #[test]
    fn the_log_the_store_and_the_replies_agree(
        params in params(),
        steps in prop::collection::vec(step(), 1..25),
    ) {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let (store, id, replies, _dir) = run_through_node(params, &steps).await;
            let log = store.events(id, 0, usize::MAX).await.unwrap();
            let from_log = replay(None, &log).expect("created");
            let stored = store.load(id).await.unwrap().state().expect("created");
            prop_assert_eq!(&from_log, &stored);
            prop_assert_eq!(
                log.iter().map(|e| e.version).collect::<Vec<_>>(),
                (1..=log.len() as u64).collect::<Vec<_>>()
            );
            for reply in &replies {
                prop_assert_eq!(reply.version, reply.resource.version);
                let at_reply = replay(None, &log[..reply.version as usize]);
                prop_assert_eq!(at_reply.as_ref(), Some(&reply.resource), "reply at version {}", reply.version);
            }
            let last = replies.last().unwrap();
            // After the last reply only the actor's own lock-expiry timer may have written.
            for e in &log[last.version as usize..] {
                prop_assert!(matches!(e.event, ResourceEvent::ResourceLockExpired { .. }), "{:?}", e);
            }
            if last.version as usize == log.len() {
                prop_assert_eq!(&last.resource, &stored);
            }
            Ok::<(), TestCaseError>(())
        })?;
    }
}
