//! Export and import: a store's log moves to another store (another layout, or MongoDB) whole.
//!
//! Guards against: a move that loses, reorders, renumbers or re-labels a commit (a player's gold
//! history would no longer add up, a retried command id would no longer be recognised), a moved
//! store whose read model disagrees with its log, and an import that, run twice after an
//! interruption, writes twice.

use warden_testkit as support;

use std::sync::Arc;
use support::{DataDir, TestNode, add, allocate, create_catalogue, lock, unlock};
use warden_core::actor::Registry;
use warden_core::domain::{Command, CommandId, PlayerId, Principal, ResourceId};
use warden_core::store::transfer::{self, TransferError};
use warden_core::store::{EventStore, ReadModelStore};
use warden_store_embedded::EmbeddedStore;

/// Runs `command` as player `who`; the resource it applied to.
async fn run(registry: &Registry, who: &str, command: Command) -> ResourceId {
    support::execute(registry, &Principal::player(who), command)
        .await
        .expect("the command is applied")
        .resource_id
}

/// A store with three players' resources and every kind of event, including a commit of two
/// events (a lock that expired, recorded before the allocate that followed it); and its directory.
async fn populated_store() -> (Arc<EmbeddedStore>, DataDir, Vec<ResourceId>) {
    populated_store_of(["alice", "bob", "carol"]).await
}

/// [`populated_store`] with other players (whose wallets are other resources).
async fn populated_store_of(players: [&str; 3]) -> (Arc<EmbeddedStore>, DataDir, Vec<ResourceId>) {
    let t = TestNode::embedded();
    let mut ids = Vec::new();
    for who in players {
        let gold = run(t.registry(), who, create_catalogue("gold")).await;
        let mana = run(t.registry(), who, create_catalogue("mana")).await;
        for i in 0..20u64 {
            let command = if i % 2 == 0 {
                reasoned(add(gold, i + 1), format!("quest {i}"))
            } else {
                reasoned(allocate(gold, i), format!("shop {i}"))
            };
            run(t.registry(), who, command).await;
        }
        run(t.registry(), who, lock(mana, "maintenance", 1_000)).await;
        run(t.registry(), who, unlock(mana)).await;
        ids.extend([gold, mana]);
    }
    // A lock that expires before the next command: that command commits two events.
    let gold = ids[0];
    run(t.registry(), players[0], lock(gold, "cooldown", 10)).await;
    t.clock.advance_ms(50);
    run(
        t.registry(),
        players[0],
        reasoned(allocate(gold, 1), "after the lock".into()),
    )
    .await;
    t.node.shutdown().await;
    (t.store, t.dir, ids)
}

/// `command` (an add or an allocate) with `reason`.
fn reasoned(mut command: Command, reason: String) -> Command {
    match &mut command {
        Command::Add(c) => c.reason = reason,
        Command::Allocate(c) => c.reason = reason,
        other => panic!("no reason to give {other:?}"),
    }
    command
}

/// Imports `log` into `store`; the read model comes with the commits.
async fn import_into(
    store: &dyn EventStore,
    log: &[u8],
) -> Result<transfer::TransferStats, TransferError> {
    let mut input = log;
    transfer::import(store, &mut input).await
}

async fn export_of(store: &dyn EventStore) -> Vec<u8> {
    let mut out = Vec::new();
    transfer::export(store, &mut out).await.unwrap();
    out
}

#[tokio::test]
async fn an_export_imported_into_an_empty_store_reproduces_the_log_and_the_read_model() {
    let (source, _source_dir, ids) = populated_store().await;
    let exported = export_of(source.as_ref()).await;
    let text = String::from_utf8(exported.clone()).unwrap();
    assert!(
        text.lines()
            .any(|l| l.contains("ResourceLockExpired") && l.contains("ResourceAllocated")),
        "a commit of two events stays one line"
    );

    let target_dir = DataDir::temp();
    let target = target_dir.open();
    let stats = import_into(target.as_ref(), &exported).await.unwrap();
    assert_eq!(stats.resources, 6);
    assert_eq!(stats.commits as usize, text.lines().count());
    assert_eq!(stats.already_there, 0);

    assert_eq!(
        export_of(target.as_ref()).await,
        exported,
        "the same log, byte for byte"
    );
    for id in &ids {
        assert_eq!(
            target.head(*id).await.unwrap(),
            source.head(*id).await.unwrap()
        );
        assert_eq!(
            ReadModelStore::get(target.as_ref(), *id).await.unwrap(),
            ReadModelStore::get(source.as_ref(), *id).await.unwrap(),
            "the read model is rebuilt with the log"
        );
    }
    let alice = PlayerId::new("alice");
    assert_eq!(target.list_by_owner(&alice).await.unwrap().len(), 2);
    // Command ids came along: a retry against the new store is recognised.
    let first = &text.lines().next().unwrap();
    let line: transfer::CommitLine = serde_json::from_str(first).unwrap();
    let rec = target.find_command(line.command_id).await.unwrap();
    assert_eq!(rec.map(|r| r.first_version), Some(line.first_version));

    // Run again (as after an interruption): everything is already there, nothing is doubled.
    let again = import_into(target.as_ref(), &exported).await.unwrap();
    assert_eq!((again.commits, again.already_there), (0, stats.commits));
    assert_eq!(export_of(target.as_ref()).await, exported);
}

#[tokio::test]
async fn an_import_onto_a_different_history_stops_with_an_error() {
    let (a, _a_dir, _) = populated_store().await;
    let (b, _b_dir, _) = populated_store_of(["dora", "erik", "fay"]).await;
    let from_a = export_of(a.as_ref()).await;
    let before = export_of(b.as_ref()).await;
    // B has its own players' wallets; A's ids are new to it, so they import. Importing B's own
    // log over a copy of A's log under B's ids is refused instead:
    let mut lines: Vec<transfer::CommitLine> = String::from_utf8(before.clone())
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let fork = CommandId::new(); // same place, another command
    lines[1].command_id = fork;
    for e in &mut lines[1].events {
        e.command_id = fork;
    }
    let forged: Vec<u8> = lines
        .iter()
        .flat_map(|l| {
            let mut v = serde_json::to_vec(l).unwrap();
            v.push(b'\n');
            v
        })
        .collect();
    match transfer::import(b.as_ref(), &mut forged.as_slice()).await {
        Err(TransferError::Diverged { version, .. }) => assert_eq!(version, lines[1].first_version),
        other => panic!("a fork must be refused, got {other:?}"),
    }
    assert_eq!(export_of(b.as_ref()).await, before, "nothing was written");
    transfer::import(b.as_ref(), &mut from_a.as_slice())
        .await
        .unwrap();
}

#[tokio::test]
async fn a_malformed_line_is_refused_with_its_number() {
    let dir = DataDir::temp();
    let store = dir.open();
    let input = b"\n{\"format\":\"warden-commit/1\",\"resource_id\":1}\n";
    match transfer::import(store.as_ref(), &mut input.as_slice()).await {
        Err(TransferError::BadLine { line, .. }) => assert_eq!(line, 2),
        other => panic!("expected a bad line, got {other:?}"),
    }
}

#[cfg(feature = "mongodb")]
#[tokio::test]
async fn an_embedded_log_moves_to_mongodb_and_back_unchanged() {
    let (source, _dir, ids) = populated_store().await;
    let exported = export_of(source.as_ref()).await;
    let (mongo, _db) = support::mongo::fresh_store("transfer").await;
    import_into(mongo.as_ref(), &exported).await.unwrap();
    assert_eq!(export_of(mongo.as_ref()).await, exported);
    for id in &ids {
        assert_eq!(
            ReadModelStore::get(mongo.as_ref(), *id).await.unwrap(),
            ReadModelStore::get(source.as_ref(), *id).await.unwrap(),
        );
    }
}
