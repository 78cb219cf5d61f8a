//! Export and import: a store's log moves to another store (another layout, or MongoDB) whole.
//!
//! Guards against: a move that loses, reorders, renumbers or re-labels a commit (a player's gold
//! history would no longer add up, a retried command id would no longer be recognised), a moved
//! store whose read model disagrees with its log, and an import that, run twice after an
//! interruption, writes twice.

#[cfg(feature = "mongodb")]
mod mongo_support;

use std::sync::Arc;
use warden::actor::{CommandRequest, Registry};
use warden::clock::ManualClock;
use warden::domain::{
    AddResource, AllocateResource, Command, CommandId, CreateResource, LockResource, PlayerId,
    Principal, ResourceId, UnlockResource,
};
use warden::node::{Node, NodeConfig};
use warden::store::Backend;
use warden::store::embedded::EmbeddedStore;
use warden::store::transfer::{self, TransferError};
use warden::store::{EventStore, ReadModelStore};

const T0: i64 = 1_767_225_600_000;

async fn run(registry: &Registry, who: &str, command: Command) -> ResourceId {
    registry
        .execute(CommandRequest {
            command_id: CommandId::new(),
            principal: Principal::player(who),
            command,
        })
        .await
        .expect("the command is applied")
        .resource_id
}

/// A store with three players' resources and every kind of event, including a commit of two
/// events (a lock that expired, recorded before the allocate that followed it).
async fn populated_store(dir: &std::path::Path) -> (Arc<EmbeddedStore>, Vec<ResourceId>) {
    let store = Arc::new(EmbeddedStore::open(dir).unwrap());
    let clock = ManualClock::at(T0);
    let node = Node::start(
        &Backend::local(store.clone(), store.clone()),
        NodeConfig {
            clock: Arc::new(clock.clone()),
            ..NodeConfig::default()
        },
    );
    let mut ids = Vec::new();
    for who in ["alice", "bob", "carol"] {
        let create = |t: &str| {
            Command::Create(CreateResource {
                resource_type: t.into(),
                owner: None,
                params: None,
            })
        };
        let gold = run(node.registry(), who, create("gold")).await;
        let mana = run(node.registry(), who, create("mana")).await;
        for i in 0..20u64 {
            let command = if i % 2 == 0 {
                Command::Add(AddResource {
                    resource_id: gold,
                    amount: i + 1,
                    reason: format!("quest {i}"),
                })
            } else {
                Command::Allocate(AllocateResource {
                    resource_id: gold,
                    amount: i,
                    reason: format!("shop {i}"),
                })
            };
            run(node.registry(), who, command).await;
        }
        run(
            node.registry(),
            who,
            Command::Lock(LockResource {
                resource_id: mana,
                reason: "maintenance".into(),
                duration_ms: 1_000,
            }),
        )
        .await;
        run(
            node.registry(),
            who,
            Command::Unlock(UnlockResource { resource_id: mana }),
        )
        .await;
        ids.extend([gold, mana]);
    }
    // A lock that expires before the next command: that command commits two events.
    let gold = ids[0];
    run(
        node.registry(),
        "alice",
        Command::Lock(LockResource {
            resource_id: gold,
            reason: "cooldown".into(),
            duration_ms: 10,
        }),
    )
    .await;
    clock.advance_ms(50);
    run(
        node.registry(),
        "alice",
        Command::Allocate(AllocateResource {
            resource_id: gold,
            amount: 1,
            reason: "after the lock".into(),
        }),
    )
    .await;
    node.shutdown().await;
    (store, ids)
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
    let source_dir = tempfile::tempdir().unwrap();
    let (source, ids) = populated_store(source_dir.path()).await;
    let exported = export_of(source.as_ref()).await;
    let text = String::from_utf8(exported.clone()).unwrap();
    assert!(
        text.lines()
            .any(|l| l.contains("ResourceLockExpired") && l.contains("ResourceAllocated")),
        "a commit of two events stays one line"
    );

    let target_dir = tempfile::tempdir().unwrap();
    let target = EmbeddedStore::open(target_dir.path()).unwrap();
    let stats = import_into(&target, &exported).await.unwrap();
    assert_eq!(stats.resources, 6);
    assert_eq!(stats.commits as usize, text.lines().count());
    assert_eq!(stats.already_there, 0);

    assert_eq!(
        export_of(&target).await,
        exported,
        "the same log, byte for byte"
    );
    for id in &ids {
        assert_eq!(
            target.head(*id).await.unwrap(),
            source.head(*id).await.unwrap()
        );
        assert_eq!(
            ReadModelStore::get(&target, *id).await.unwrap(),
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
    let again = import_into(&target, &exported).await.unwrap();
    assert_eq!((again.commits, again.already_there), (0, stats.commits));
    assert_eq!(export_of(&target).await, exported);
}

#[tokio::test]
async fn an_import_onto_a_different_history_stops_with_an_error() {
    let a_dir = tempfile::tempdir().unwrap();
    let (a, _) = populated_store(a_dir.path()).await;
    let b_dir = tempfile::tempdir().unwrap();
    let (b, _) = populated_store(b_dir.path()).await;
    let from_a = export_of(a.as_ref()).await;
    let before = export_of(b.as_ref()).await;
    // B has its own resources; A's ids are new to it, so they import. Importing B's own log
    // over a copy of A's log under B's ids is refused instead:
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
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(dir.path()).unwrap();
    let input = b"\n{\"format\":\"warden-commit/1\",\"resource_id\":1}\n";
    match transfer::import(&store, &mut input.as_slice()).await {
        Err(TransferError::BadLine { line, .. }) => assert_eq!(line, 2),
        other => panic!("expected a bad line, got {other:?}"),
    }
}

#[cfg(feature = "mongodb")]
#[tokio::test]
async fn an_embedded_log_moves_to_mongodb_and_back_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let (source, ids) = populated_store(dir.path()).await;
    let exported = export_of(source.as_ref()).await;
    let (mongo, _db) = mongo_support::fresh_store("transfer").await;
    import_into(mongo.as_ref(), &exported).await.unwrap();
    assert_eq!(export_of(mongo.as_ref()).await, exported);
    for id in &ids {
        assert_eq!(
            ReadModelStore::get(mongo.as_ref(), *id).await.unwrap(),
            ReadModelStore::get(source.as_ref(), *id).await.unwrap(),
        );
    }
}
