//! Rule tests for the pure domain: one given/when/then test per command and per rejection of
//! `decide_create`, `decide` and `apply`.
//!
//! Guards against: a rule silently loosened (a player spending what it does not own, a lock that
//! does not block, an add that overflows or passes max), a wrong rejection code reaching clients,
//! and regeneration that loses or invents fractions of a unit.

use warden_testkit as support;

use support::{T0, alice, bob, service};
use warden_core::domain::{
    AddResource, AllocateResource, Catalogue, Command, CommandId, CreateResource, LockResource,
    MAX_LOCK_MS, MAX_REASON_BYTES, Principal, Rejection, ResourceEvent, ResourceId, ResourceParams,
    ServerResource, Timestamp, UnlockResource, apply, decide, decide_create, stamp,
};
use warden_net::Coded;
use warden_protocol::ErrorCode;

fn at(ms_after_t0: i64) -> Timestamp {
    Timestamp(T0 + ms_after_t0)
}

fn create_cmd(resource_type: &str) -> CreateResource {
    CreateResource {
        name: None,
        resource_type: resource_type.into(),
        owner: None,
        params: None,
    }
}

/// Folds decided events into the state, as an actor does after a commit.
fn commit(
    state: Option<ServerResource>,
    id: ResourceId,
    events: Vec<ResourceEvent>,
    now: Timestamp,
) -> ServerResource {
    let base = state.as_ref().map_or(0, |s| s.version);
    let stamped = stamp(
        id,
        base,
        CommandId::new(),
        warden_core::domain::Role::Player,
        now,
        events,
    );
    stamped
        .iter()
        .fold(state, apply)
        .expect("decided events lead to a state")
}

/// Given: a resource created by `who` with `cmd` at T0.
fn given_created(who: &Principal, cmd: CreateResource) -> ServerResource {
    let event = decide_create(&Catalogue::default(), who, &cmd, at(0)).expect("create is accepted");
    commit(None, ResourceId::new(), vec![event], at(0))
}

/// Given: alice's gold (1000 of 5000, 0.5/s) created at T0.
fn given_alices_gold() -> ServerResource {
    given_created(&alice(), create_cmd("gold"))
}

/// Given: a resource alice owns with fixed parameters and no regeneration, made by a service.
fn given_alices(initial_amount: u64, max_amount: u64) -> ServerResource {
    given_alices_regenerating(initial_amount, max_amount, 0)
}

/// Given: a resource alice owns with the given parameters, made by a service.
fn given_alices_regenerating(
    initial_amount: u64,
    max_amount: u64,
    regen_milli: u64,
) -> ServerResource {
    given_created(
        &service(),
        CreateResource {
            name: None,
            resource_type: "tokens".into(),
            owner: Some(alice().player),
            params: Some(ResourceParams {
                initial_amount,
                max_amount,
                regen_milli,
            }),
        },
    )
}

fn allocate(r: &ServerResource, amount: u64) -> Command {
    Command::Allocate(AllocateResource {
        resource_id: r.id,
        amount,
        reason: "Purchase item".into(),
    })
}

fn add(r: &ServerResource, amount: u64) -> Command {
    Command::Add(AddResource {
        resource_id: r.id,
        amount,
        reason: "Quest reward".into(),
    })
}

fn lock(r: &ServerResource, duration_ms: u64) -> Command {
    Command::Lock(LockResource {
        resource_id: r.id,
        reason: "Maintenance".into(),
        duration_ms,
    })
}

fn unlock(r: &ServerResource) -> Command {
    Command::Unlock(UnlockResource { resource_id: r.id })
}

/// When `who` sends `cmd` at `now`: the state after it, or the rejection.
fn when(
    state: &ServerResource,
    who: &Principal,
    cmd: &Command,
    now: Timestamp,
) -> Result<ServerResource, Rejection> {
    let events = decide(state, who, cmd, now)?;
    Ok(commit(Some(state.clone()), state.id, events, now))
}

fn rejected(state: &ServerResource, who: &Principal, cmd: &Command, now: Timestamp) -> Rejection {
    match decide(state, who, cmd, now) {
        Ok(events) => panic!("expected a rejection, got events {events:?}"),
        Err(r) => r,
    }
}

// ---------------------------------------------------------------- create

#[test]
fn a_player_creates_a_resource_with_the_catalogue_parameters() {
    let gold = given_alices_gold();
    assert_eq!(gold.owner, alice().player);
    assert_eq!(gold.resource_type, "gold");
    assert_eq!(
        (gold.balance.amount, gold.max_amount, gold.regen_milli),
        (1000, 5000, 500)
    );
    assert_eq!(
        gold.balance.regen_at,
        at(0),
        "regeneration counts from creation"
    );
    assert_eq!(gold.version, 1);
    assert_eq!(gold.lock, None);
    assert_eq!(
        (gold.created_by.clone(), gold.created_at),
        (alice().player, at(0))
    );
}

#[test]
fn a_player_cannot_create_a_resource_for_another_owner() {
    let cmd = CreateResource {
        owner: Some(bob().player),
        ..create_cmd("gold")
    };
    let r = decide_create(&Catalogue::default(), &alice(), &cmd, at(0)).unwrap_err();
    assert_eq!(r.code(), ErrorCode::Forbidden);
}

#[test]
fn a_player_naming_itself_as_owner_is_allowed() {
    let cmd = CreateResource {
        owner: Some(alice().player),
        ..create_cmd("mana")
    };
    let e = decide_create(&Catalogue::default(), &alice(), &cmd, at(0)).unwrap();
    assert!(matches!(e, ResourceEvent::ResourceCreated { owner, .. } if owner == alice().player));
}

#[test]
fn a_player_cannot_choose_custom_parameters() {
    // The exploit this guards against: a player creating gold with a huge initial amount.
    let cmd = CreateResource {
        params: Some(ResourceParams {
            initial_amount: 1_000_000,
            max_amount: 1_000_000,
            regen_milli: 0,
        }),
        ..create_cmd("gold")
    };
    let r = decide_create(&Catalogue::default(), &alice(), &cmd, at(0)).unwrap_err();
    assert_eq!(r.code(), ErrorCode::Forbidden);
}

#[test]
fn a_service_creates_for_another_owner_with_custom_parameters() {
    let r = given_alices(7, 70);
    assert_eq!(r.owner, alice().player);
    assert_eq!(r.created_by, service().player);
    assert_eq!((r.balance.amount, r.max_amount, r.regen_milli), (7, 70, 0));
    assert_eq!(
        r.resource_type, "tokens",
        "a custom type needs no catalogue entry"
    );
}

#[test]
fn a_spectator_cannot_create() {
    let r = decide_create(
        &Catalogue::default(),
        &Principal::spectator("eve"),
        &create_cmd("gold"),
        at(0),
    )
    .unwrap_err();
    assert_eq!(r.code(), ErrorCode::Forbidden);
}

#[test]
fn an_unknown_resource_type_is_refused() {
    let r = decide_create(
        &Catalogue::default(),
        &alice(),
        &create_cmd("diamonds"),
        at(0),
    )
    .unwrap_err();
    assert_eq!(r, Rejection::UnknownResourceType("diamonds".into()));
    assert_eq!(r.code(), ErrorCode::UnknownResourceType);
}

#[test]
fn invalid_custom_parameters_are_refused() {
    let cases = [
        (
            "max zero",
            ResourceParams {
                initial_amount: 0,
                max_amount: 0,
                regen_milli: 0,
            },
        ),
        (
            "initial above max",
            ResourceParams {
                initial_amount: 11,
                max_amount: 10,
                regen_milli: 0,
            },
        ),
        (
            "regeneration too fast",
            ResourceParams {
                initial_amount: 0,
                max_amount: 10,
                regen_milli: warden_core::domain::MAX_REGEN_MILLI + 1,
            },
        ),
    ];
    for (what, params) in cases {
        let cmd = CreateResource {
            name: None,
            resource_type: "tokens".into(),
            owner: Some(alice().player),
            params: Some(params),
        };
        let r = decide_create(&Catalogue::default(), &service(), &cmd, at(0)).unwrap_err();
        assert_eq!(r.code(), ErrorCode::InvalidParams, "{what}");
    }
}

#[test]
fn an_empty_or_overlong_type_name_or_owner_is_refused() {
    for name in [String::new(), "x".repeat(65)] {
        let r = decide_create(&Catalogue::default(), &service(), &create_cmd(&name), at(0))
            .unwrap_err();
        assert_eq!(
            r.code(),
            ErrorCode::InvalidParams,
            "type name of {} bytes",
            name.len()
        );
    }
    let cmd = CreateResource {
        owner: Some(warden_core::domain::PlayerId::new("")),
        ..create_cmd("gold")
    };
    let r = decide_create(&Catalogue::default(), &service(), &cmd, at(0)).unwrap_err();
    assert_eq!(r.code(), ErrorCode::InvalidParams);
}

#[test]
fn create_on_an_existing_resource_is_already_exists() {
    let gold = given_alices_gold();
    let r = rejected(&gold, &alice(), &Command::Create(create_cmd("gold")), at(0));
    assert_eq!(r.code(), ErrorCode::AlreadyExists);
}

// ---------------------------------------------------------------- allocate

#[test]
fn allocate_takes_the_amount_and_records_the_resulting_balance() {
    let gold = given_alices_gold();
    let events = decide(&gold, &alice(), &allocate(&gold, 200), at(0)).unwrap();
    assert!(matches!(
        &events[..],
        [ResourceEvent::ResourceAllocated { amount: 200, balance, by, reason }]
            if balance.amount == 800 && *by == alice().player && reason == "Purchase item"
    ));
    let after = when(&gold, &alice(), &allocate(&gold, 200), at(0)).unwrap();
    assert_eq!((after.balance.amount, after.version), (800, 2));
    assert_eq!(after.updated_by, alice().player);
}

#[test]
fn allocate_of_everything_leaves_zero() {
    let r = given_alices(5, 10);
    let after = when(&r, &alice(), &allocate(&r, 5), at(0)).unwrap();
    assert_eq!(after.balance.amount, 0);
}

#[test]
fn allocate_of_zero_is_an_invalid_amount() {
    let gold = given_alices_gold();
    assert_eq!(
        rejected(&gold, &alice(), &allocate(&gold, 0), at(0)).code(),
        ErrorCode::InvalidAmount
    );
}

#[test]
fn allocate_of_more_than_available_is_insufficient_and_says_how_much_is_there() {
    let gold = given_alices_gold();
    let r = rejected(&gold, &alice(), &allocate(&gold, 1001), at(0));
    assert_eq!(
        r,
        Rejection::Insufficient {
            available: 1000,
            requested: 1001
        }
    );
    assert_eq!(r.code(), ErrorCode::Insufficient);
    let r = rejected(&gold, &alice(), &allocate(&gold, u64::MAX), at(0));
    assert_eq!(r.code(), ErrorCode::Insufficient);
}

#[test]
fn allocate_while_locked_is_refused_with_code_locked_even_for_the_holder() {
    let gold = given_alices_gold();
    let locked = when(&gold, &alice(), &lock(&gold, 60_000), at(0)).unwrap();
    let r = rejected(&locked, &alice(), &allocate(&locked, 1), at(1_000));
    assert_eq!(
        r,
        Rejection::Locked {
            reason: "Maintenance".into(),
            expires_at: at(60_000)
        }
    );
    assert_eq!(r.code(), ErrorCode::Locked);
    let r = rejected(&locked, &service(), &allocate(&locked, 1), at(1_000));
    assert_eq!(
        r.code(),
        ErrorCode::Locked,
        "a service cannot spend through a lock either"
    );
}

#[test]
fn allocate_succeeds_once_regeneration_has_made_the_amount_sufficient() {
    let gold = given_alices_gold();
    assert_eq!(
        rejected(&gold, &alice(), &allocate(&gold, 1010), at(0)).code(),
        ErrorCode::Insufficient
    );
    // 0.5/s: 20 s later there are 10 more.
    assert_eq!(
        rejected(&gold, &alice(), &allocate(&gold, 1010), at(19_999)),
        Rejection::Insufficient {
            available: 1009,
            requested: 1010
        }
    );
    let after = when(&gold, &alice(), &allocate(&gold, 1010), at(20_000)).unwrap();
    assert_eq!(after.balance.amount, 0);
    assert_eq!(after.balance.regen_at, at(20_000));
}

// ---------------------------------------------------------------- add

#[test]
fn add_increases_the_amount() {
    let gold = given_alices_gold();
    let after = when(&gold, &alice(), &add(&gold, 500), at(0)).unwrap();
    assert_eq!((after.balance.amount, after.version), (1500, 2));
}

#[test]
fn add_up_to_exactly_max_is_accepted() {
    let gold = given_alices_gold();
    let after = when(&gold, &alice(), &add(&gold, 4000), at(0)).unwrap();
    assert_eq!(after.balance.amount, 5000);
}

#[test]
fn add_past_max_is_refused_with_the_room_left_counting_regeneration() {
    let gold = given_alices_gold();
    let r = rejected(&gold, &alice(), &add(&gold, 4001), at(0));
    assert_eq!(
        r,
        Rejection::WouldExceedMax {
            requested: 4001,
            room: 4000
        }
    );
    assert_eq!(r.code(), ErrorCode::ExceedsMax);
    // 10 s later 5 units have regenerated, so the room is 3995.
    let r = rejected(&gold, &alice(), &add(&gold, 4000), at(10_000));
    assert_eq!(
        r,
        Rejection::WouldExceedMax {
            requested: 4000,
            room: 3995
        }
    );
}

#[test]
fn add_that_would_overflow_u64_is_refused_as_overflow() {
    let gold = given_alices_gold();
    let r = rejected(&gold, &alice(), &add(&gold, u64::MAX), at(0));
    assert_eq!(r.code(), ErrorCode::Overflow);
    // Even when max is u64::MAX, the sum is checked rather than wrapped.
    let huge = given_alices(u64::MAX - 1, u64::MAX);
    assert_eq!(
        rejected(&huge, &alice(), &add(&huge, 2), at(0)).code(),
        ErrorCode::Overflow
    );
    assert_eq!(
        when(&huge, &alice(), &add(&huge, 1), at(0))
            .unwrap()
            .balance
            .amount,
        u64::MAX
    );
}

#[test]
fn add_of_zero_is_an_invalid_amount() {
    let gold = given_alices_gold();
    assert_eq!(
        rejected(&gold, &alice(), &add(&gold, 0), at(0)).code(),
        ErrorCode::InvalidAmount
    );
}

#[test]
fn add_is_allowed_while_locked() {
    // A lock blocks spending, not income (README: "adds and regeneration go on").
    let gold = given_alices_gold();
    let locked = when(&gold, &alice(), &lock(&gold, 60_000), at(0)).unwrap();
    let after = when(&locked, &alice(), &add(&locked, 5), at(0)).unwrap();
    assert_eq!(after.balance.amount, 1005);
    assert!(after.lock.is_some());
}

// ---------------------------------------------------------------- regeneration

#[test]
fn regeneration_at_half_a_unit_per_second_gives_one_unit_every_two_seconds() {
    let gold = given_alices_regenerating(0, 100, 500);
    let amount_at = |ms: i64| {
        // An add of 1 reveals the regenerated balance (minus the 1 added).
        when(&gold, &alice(), &add(&gold, 1), at(ms))
            .unwrap()
            .balance
            .amount
            - 1
    };
    assert_eq!(amount_at(1_999), 0);
    assert_eq!(amount_at(2_000), 1);
    assert_eq!(amount_at(3_999), 1);
    assert_eq!(amount_at(4_000), 2);
    assert_eq!(amount_at(60_000), 30);
}

#[test]
fn regeneration_stops_at_max_and_banks_no_carry() {
    let gold = given_alices_gold();
    // 4000 missing at 0.5/s takes 8000 s; wait far longer.
    let later = at(100_000_000);
    let after = when(&gold, &alice(), &allocate(&gold, 1), later).unwrap();
    assert_eq!(after.balance.amount, 4999);
    assert_eq!(
        after.balance.regen_carry, 0,
        "a full resource banks no fraction"
    );
    // One second later half a unit has accrued, not a whole one.
    let r = rejected(
        &after,
        &alice(),
        &add(&after, 2),
        Timestamp(later.0 + 1_000),
    );
    assert_eq!(
        r,
        Rejection::WouldExceedMax {
            requested: 2,
            room: 1
        }
    );
}

#[test]
fn regeneration_carries_fractions_exactly_across_many_commands() {
    // Allocating 1 every 1.5 s at 0.5/s: each interval earns 0.75, never a whole unit on its
    // own; only an exact carry makes 100 intervals earn 75 units.
    let mut r = given_alices_gold();
    for i in 1..=100 {
        r = when(&r, &alice(), &allocate(&r, 1), at(i * 1_500)).unwrap();
    }
    assert_eq!(r.balance.amount, 1000 + 75 - 100);
    assert_eq!(r.balance.regen_carry, 0);
    assert_eq!(r.version, 101);
}

#[test]
fn a_clock_stepping_back_neither_takes_nor_gives_regeneration() {
    let gold = given_alices_gold();
    let later = when(&gold, &alice(), &add(&gold, 1), at(10_000)).unwrap();
    assert_eq!(later.balance.amount, 1006);
    let earlier = when(&later, &alice(), &add(&later, 1), at(5_000)).unwrap();
    assert_eq!(earlier.balance.amount, 1007);
    assert_eq!(
        earlier.balance.regen_at,
        at(10_000),
        "the anchor never moves back"
    );
}

// ---------------------------------------------------------------- lock

#[test]
fn lock_records_holder_reason_and_expiry() {
    let gold = given_alices_gold();
    let after = when(&gold, &alice(), &lock(&gold, 300_000), at(0)).unwrap();
    let l = after.lock.expect("locked");
    assert_eq!(
        (l.holder, l.reason.as_str(), l.expires_at),
        (alice().player, "Maintenance", at(300_000))
    );
    assert_eq!(after.version, 2);
}

#[test]
fn lock_of_zero_or_more_than_a_day_is_an_invalid_duration() {
    let gold = given_alices_gold();
    for d in [0, MAX_LOCK_MS + 1, u64::MAX] {
        let r = rejected(&gold, &alice(), &lock(&gold, d), at(0));
        assert_eq!(
            r,
            Rejection::InvalidDuration {
                max_ms: MAX_LOCK_MS
            },
            "duration {d}"
        );
        assert_eq!(r.code(), ErrorCode::InvalidDuration);
    }
    assert!(when(&gold, &alice(), &lock(&gold, 1), at(0)).is_ok());
    assert!(when(&gold, &alice(), &lock(&gold, MAX_LOCK_MS), at(0)).is_ok());
}

#[test]
fn lock_of_a_locked_resource_is_already_locked() {
    let gold = given_alices_gold();
    let locked = when(&gold, &alice(), &lock(&gold, 60_000), at(0)).unwrap();
    assert_eq!(
        rejected(&locked, &alice(), &lock(&locked, 1_000), at(59_999)).code(),
        ErrorCode::AlreadyLocked
    );
    assert_eq!(
        rejected(&locked, &service(), &lock(&locked, 1_000), at(1)).code(),
        ErrorCode::AlreadyLocked
    );
}

#[test]
fn an_expired_lock_is_recorded_before_the_next_event_and_no_longer_blocks() {
    let gold = given_alices_gold();
    let locked = when(&gold, &alice(), &lock(&gold, 60_000), at(0)).unwrap();
    // One millisecond before expiry it still blocks.
    assert_eq!(
        rejected(&locked, &alice(), &allocate(&locked, 1), at(59_999)).code(),
        ErrorCode::Locked
    );
    // At expiry the allocate goes through, after a recorded expiry.
    let events = decide(&locked, &alice(), &allocate(&locked, 1), at(60_000)).unwrap();
    assert!(
        matches!(
            &events[..],
            [
                ResourceEvent::ResourceLockExpired { expired_at },
                ResourceEvent::ResourceAllocated { amount: 1, .. },
            ] if *expired_at == at(60_000)
        ),
        "expiry first, then the allocate: {events:?}"
    );
    let after = when(&locked, &alice(), &allocate(&locked, 1), at(70_000)).unwrap();
    assert_eq!(after.lock, None);
    assert_eq!(after.version, 4, "created, locked, expired, allocated");
    // And a new lock may be taken right away.
    let relocked = when(&locked, &alice(), &lock(&locked, 1_000), at(60_001)).unwrap();
    assert_eq!(relocked.lock.unwrap().expires_at, at(61_001));
    assert_eq!(
        relocked.version, 4,
        "created, locked, expired, locked again"
    );
}

#[test]
fn a_rejected_command_records_no_expiry_either() {
    let gold = given_alices_gold();
    let locked = when(&gold, &alice(), &lock(&gold, 1_000), at(0)).unwrap();
    let r = rejected(&locked, &alice(), &allocate(&locked, 0), at(5_000));
    assert_eq!(r.code(), ErrorCode::InvalidAmount);
}

// ---------------------------------------------------------------- unlock

#[test]
fn the_holder_unlocks_its_lock() {
    let gold = given_alices_gold();
    let locked = when(&gold, &alice(), &lock(&gold, 60_000), at(0)).unwrap();
    let after = when(&locked, &alice(), &unlock(&locked), at(1)).unwrap();
    assert_eq!(after.lock, None);
    assert_eq!(after.version, 3);
    assert!(when(&after, &alice(), &allocate(&after, 1), at(2)).is_ok());
}

#[test]
fn an_owner_cannot_unlock_its_resource_when_a_service_holds_the_lock() {
    let gold = given_alices_gold();
    let locked = when(&gold, &service(), &lock(&gold, 60_000), at(0)).unwrap();
    let r = rejected(&locked, &alice(), &unlock(&locked), at(1));
    assert_eq!(r, Rejection::NotLockHolder);
    assert_eq!(r.code(), ErrorCode::NotLockHolder);
}

#[test]
fn a_service_unlocks_any_lock() {
    let gold = given_alices_gold();
    let locked = when(&gold, &alice(), &lock(&gold, 60_000), at(0)).unwrap();
    let after = when(&locked, &service(), &unlock(&locked), at(1)).unwrap();
    assert_eq!(after.lock, None);
    assert_eq!(after.updated_by, service().player);
}

#[test]
fn unlock_of_an_unlocked_or_expired_resource_is_not_locked() {
    let gold = given_alices_gold();
    assert_eq!(
        rejected(&gold, &alice(), &unlock(&gold), at(0)).code(),
        ErrorCode::NotLocked
    );
    let locked = when(&gold, &alice(), &lock(&gold, 1_000), at(0)).unwrap();
    assert_eq!(
        rejected(&locked, &alice(), &unlock(&locked), at(1_000)).code(),
        ErrorCode::NotLocked
    );
}

// ---------------------------------------------------------------- who may act

#[test]
fn a_player_cannot_act_on_a_resource_it_does_not_own() {
    let gold = given_alices_gold();
    for cmd in [
        allocate(&gold, 1),
        add(&gold, 1),
        lock(&gold, 1_000),
        unlock(&gold),
    ] {
        let r = rejected(&gold, &bob(), &cmd, at(0));
        assert_eq!(r, Rejection::NotOwner, "{cmd:?}");
        assert_eq!(r.code(), ErrorCode::Forbidden);
    }
}

#[test]
fn a_service_acts_on_any_resource() {
    let gold = given_alices_gold();
    let after = when(&gold, &service(), &allocate(&gold, 10), at(0)).unwrap();
    let after = when(&after, &service(), &add(&after, 20), at(0)).unwrap();
    assert_eq!(after.balance.amount, 1010);
}

#[test]
fn a_spectator_can_send_no_command() {
    let gold = given_alices_gold();
    let eve = Principal::spectator("eve");
    // Even a spectator that shares the owner's name.
    let alice_watching = Principal::spectator("alice");
    for cmd in [
        allocate(&gold, 1),
        add(&gold, 1),
        lock(&gold, 1_000),
        unlock(&gold),
        Command::ExpireLock(gold.id),
    ] {
        for who in [&eve, &alice_watching] {
            assert_eq!(
                rejected(&gold, who, &cmd, at(0)).code(),
                ErrorCode::Forbidden,
                "{cmd:?}"
            );
        }
    }
}

#[test]
fn a_reason_longer_than_the_limit_is_refused() {
    let gold = given_alices_gold();
    let long = "r".repeat(MAX_REASON_BYTES + 1);
    let fits = "r".repeat(MAX_REASON_BYTES);
    let with_reason = |reason: &str| {
        [
            Command::Allocate(AllocateResource {
                resource_id: gold.id,
                amount: 1,
                reason: reason.into(),
            }),
            Command::Add(AddResource {
                resource_id: gold.id,
                amount: 1,
                reason: reason.into(),
            }),
            Command::Lock(LockResource {
                resource_id: gold.id,
                reason: reason.into(),
                duration_ms: 1_000,
            }),
        ]
    };
    for cmd in with_reason(&long) {
        let r = rejected(&gold, &alice(), &cmd, at(0));
        assert_eq!(
            r,
            Rejection::ReasonTooLong {
                max: MAX_REASON_BYTES
            }
        );
        assert_eq!(r.code(), ErrorCode::ReasonTooLong);
    }
    for cmd in with_reason(&fits) {
        assert!(when(&gold, &alice(), &cmd, at(0)).is_ok(), "{cmd:?}");
    }
}

// ---------------------------------------------------------------- expire lock (internal)

#[test]
fn a_player_cannot_expire_a_lock() {
    let gold = given_alices_gold();
    let locked = when(&gold, &alice(), &lock(&gold, 1_000), at(0)).unwrap();
    let r = rejected(
        &locked,
        &alice(),
        &Command::ExpireLock(locked.id),
        at(5_000),
    );
    assert_eq!(r.code(), ErrorCode::Forbidden);
}

#[test]
fn the_system_expires_a_due_lock_and_does_nothing_before() {
    let gold = given_alices_gold();
    let locked = when(&gold, &alice(), &lock(&gold, 1_000), at(0)).unwrap();
    let expire = Command::ExpireLock(locked.id);
    assert_eq!(
        decide(&locked, &Principal::system(), &expire, at(999)).unwrap(),
        vec![]
    );
    let after = when(&locked, &Principal::system(), &expire, at(1_000)).unwrap();
    assert_eq!(after.lock, None);
    assert_eq!(after.updated_by, Principal::system().player);
    assert_eq!(
        decide(&after, &Principal::system(), &expire, at(2_000)).unwrap(),
        vec![],
        "nothing left to expire"
    );
}

// ---------------------------------------------------------------- apply

#[test]
fn apply_records_version_time_and_command_of_each_event() {
    let gold = given_alices_gold();
    let cmd = CommandId::new();
    let events = decide(&gold, &alice(), &add(&gold, 3), at(42)).unwrap();
    let stamped = stamp(
        gold.id,
        gold.version,
        cmd,
        warden_core::domain::Role::Player,
        at(42),
        events,
    );
    let after = apply(Some(gold.clone()), &stamped[0]).unwrap();
    assert_eq!(
        (after.version, after.updated_at, after.last_command),
        (2, at(42), cmd)
    );
    assert_eq!(
        after.created_at, gold.created_at,
        "creation audit fields stay"
    );
}

#[test]
fn apply_of_a_non_creation_event_to_nothing_stays_nothing() {
    // A log that does not start with a creation cannot come from decide; apply must not invent
    // a resource from it (nor panic).
    let gold = given_alices_gold();
    let events = decide(&gold, &alice(), &add(&gold, 3), at(0)).unwrap();
    let stamped = stamp(
        gold.id,
        1,
        CommandId::new(),
        warden_core::domain::Role::Player,
        at(0),
        events,
    );
    assert_eq!(apply(None, &stamped[0]), None);
}
