//! The invariant check catches what it exists to catch: a server whose final state does not
//! match what it acknowledged, and subscribers that saw a gap or a repeat. It is a pure function,
//! so these tests feed it ledgers and states built by hand — including ledgers that lie.

use client_sim::check::{
    Entry, FinalResource, HistoryRecord, LOCK_EXPIRED, Ledger, Op, Outcome, Seen, SubscriberLog,
    check,
};
use std::collections::{BTreeMap, HashMap};
use warden_protocol::{CommandId, ErrorCode, ResourceId};

/// A consistent world: create (1000), allocate 200, add 500, a rejected allocate, a lock that
/// expired by itself, and an unknown-outcome add that the history shows applied.
fn consistent() -> (Ledger, BTreeMap<ResourceId, FinalResource>, ResourceId) {
    let id = ResourceId::new();
    let ids: Vec<CommandId> = (0..5).map(|_| CommandId::new()).collect();
    let mut ledger = Ledger::default();
    let mut push = |i: usize, op, outcome| {
        ledger.push(Entry {
            resource_id: id,
            command_id: ids[i],
            op,
            outcome,
        })
    };
    push(
        0,
        Op::Create {
            initial: 1000,
            regen_milli: 0,
        },
        Outcome::Applied { version: 1 },
    );
    push(1, Op::Allocate(200), Outcome::Applied { version: 2 });
    push(2, Op::Lock, Outcome::Applied { version: 3 });
    push(
        3,
        Op::Allocate(5000),
        Outcome::Rejected {
            code: ErrorCode::Insufficient,
        },
    );
    push(4, Op::Add(500), Outcome::Unknown);
    let history = vec![
        HistoryRecord {
            version: 1,
            event_type: "ResourceCreated".into(),
            command_id: ids[0],
        },
        HistoryRecord {
            version: 2,
            event_type: "ResourceAllocated".into(),
            command_id: ids[1],
        },
        HistoryRecord {
            version: 3,
            event_type: "ResourceLocked".into(),
            command_id: ids[2],
        },
        HistoryRecord {
            version: 4,
            event_type: LOCK_EXPIRED.into(),
            command_id: CommandId::new(),
        },
        HistoryRecord {
            version: 5,
            event_type: "ResourceAdded".into(),
            command_id: ids[4],
        },
    ];
    let server = BTreeMap::from([(
        id,
        FinalResource {
            amount: 1300,
            version: 5,
            regen_milli: Some(0),
            history: Some(history),
        },
    )]);
    (ledger, server, id)
}

#[test]
fn a_consistent_run_passes_and_resolves_unknown_outcomes_from_the_history() {
    // Guards against false alarms: lock expiries the server records by itself and commands
    // whose reply was lost must not count as violations.
    let (ledger, server, _) = consistent();
    let result = check(&ledger, &server, &SubscriberLog::new());
    assert!(result.ok(), "{:?}", result.violations);
    assert_eq!(result.resources_checked, 1);
    assert_eq!(result.unknown_applied, 1);
}

#[test]
fn a_ledger_that_lies_about_one_acknowledged_amount_is_caught() {
    // Guards against a check that cannot fail: claim the acknowledged allocate took 201, not 200.
    let (mut ledger, server, id) = consistent();
    let lie = ledger
        .entries
        .iter_mut()
        .find(|e| e.op == Op::Allocate(200))
        .unwrap();
    lie.op = Op::Allocate(201);
    let result = check(&ledger, &server, &SubscriberLog::new());
    assert!(!result.ok());
    assert_eq!(result.violations.len(), 1, "{:?}", result.violations);
    assert_eq!(result.violations[0].resource_id, Some(id));
    assert!(
        result.violations[0].what.contains("amount is 1300"),
        "{}",
        result.violations[0]
    );
}

#[test]
fn an_acknowledged_command_missing_from_the_server_is_caught() {
    // Guards against a lost acknowledged write: the ledger holds an applied add the server
    // never recorded, so version, amount and history all disagree.
    let (mut ledger, server, id) = consistent();
    ledger.push(Entry {
        resource_id: id,
        command_id: CommandId::new(),
        op: Op::Add(7),
        outcome: Outcome::Applied { version: 6 },
    });
    let result = check(&ledger, &server, &SubscriberLog::new());
    let text: Vec<String> = result.violations.iter().map(|v| v.to_string()).collect();
    assert!(text.iter().any(|v| v.contains("version is 5")), "{text:?}");
    assert!(
        text.iter().any(|v| v.contains("amount is 1300")),
        "{text:?}"
    );
    assert!(
        text.iter().any(|v| v.contains("in the history 0 times")),
        "{text:?}"
    );
}

#[test]
fn two_commands_acknowledged_with_one_version_are_a_lost_update() {
    // Guards against two writers both being told they committed version N.
    let (mut ledger, server, _) = consistent();
    let add = ledger
        .entries
        .iter_mut()
        .find(|e| e.op == Op::Add(500))
        .unwrap();
    add.outcome = Outcome::Applied { version: 2 };
    let result = check(&ledger, &server, &SubscriberLog::new());
    assert!(
        result
            .violations
            .iter()
            .any(|v| v.what.contains("lost update")),
        "{:?}",
        result.violations
    );
}

#[test]
fn a_rejected_command_found_in_the_history_is_caught() {
    // Guards against a server that refuses a command but writes it anyway.
    let (mut ledger, server, _) = consistent();
    let lock = ledger
        .entries
        .iter_mut()
        .find(|e| e.op == Op::Lock)
        .unwrap();
    lock.outcome = Outcome::Rejected {
        code: ErrorCode::AlreadyLocked,
    };
    let result = check(&ledger, &server, &SubscriberLog::new());
    assert!(
        result
            .violations
            .iter()
            .any(|v| v.what.contains("rejected (already_locked)"))
    );
}

#[test]
fn a_subscriber_gap_repeat_or_stale_end_is_caught() {
    // Guards against live updates that skip or repeat a version, or stop before the end.
    let (ledger, server, id) = consistent();
    let mut gap = Seen::at(1);
    gap.update(1, 2);
    gap.update(3, 5); // version 3 never arrived
    let mut repeat = Seen::at(1);
    for (b, v) in [(1, 2), (2, 3), (2, 3), (3, 4), (4, 5)] {
        repeat.update(b, v);
    }
    let mut stale = Seen::at(1);
    stale.update(1, 2);
    let mut fine = Seen::at(2);
    for (b, v) in [(2, 3), (3, 5)] {
        fine.update(b, v);
    }
    let subs: SubscriberLog = [
        ("gap", gap),
        ("repeat", repeat),
        ("stale", stale),
        ("fine", fine),
    ]
    .into_iter()
    .map(|(n, s)| (n.to_owned(), HashMap::from([(id, s)])))
    .collect();
    let result = check(&ledger, &server, &subs);
    let text: Vec<String> = result.violations.iter().map(|v| v.to_string()).collect();
    assert_eq!(text.len(), 3, "{text:?}");
    assert!(text.iter().any(|v| v.contains("subscriber gap: gap")));
    assert!(text.iter().any(|v| v.contains("subscriber repeat: repeat")));
    assert!(
        text.iter()
            .any(|v| v.contains("subscriber stale: last version seen is 2"))
    );
}
