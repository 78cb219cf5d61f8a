//! Durability: what was acknowledged is in the store after everything is dropped and reopened,
//! and the read model can always be rebuilt or repaired from the log.
//!
//! Guards against: a success reply sent before the commit (an acknowledged change missing after
//! a restart or a kill -9), a store that leaves its files open after drop, a read model that
//! drifts from the log or stays behind it after a crash, and a store that will not write again
//! after a crash.

use warden_testkit as support;
use warden_testkit::fill;

use std::collections::BTreeMap;
use std::sync::Arc;
use support::node::close;
use support::{
    DataDir, T0, TestNode, alice, allocate, bare_registry, create_catalogue, create_gold, execute,
    request,
};
use warden_core::actor::{CommandReply, Registry};
use warden_core::clock::ManualClock;
use warden_core::domain::ClientSchema;
use warden_core::domain::{
    AddResource, AllocateResource, ClientResource, Command, CommandId, LockResource, Principal,
    ResourceId, ServerResource, UnlockResource, replay,
};
use warden_core::projection::{catch_up, rebuild};
use warden_core::store::{EventStore, ReadModelStore};
use warden_store_embedded::{EmbeddedOptions, EmbeddedStore};

/// Runs `command` as `who`; its command id and reply if it was applied.
async fn send(
    registry: &Registry,
    who: &Principal,
    command: Command,
) -> Option<(CommandId, CommandReply)> {
    let request = request(who, command);
    let command_id = request.command_id;
    registry
        .execute(request)
        .await
        .ok()
        .map(|reply| (command_id, reply))
}

/// Player `p` creates gold and sends a script of commands; returns every acknowledged command.
async fn play(registry: Registry, p: usize, commands: usize) -> Vec<(CommandId, CommandReply)> {
    let who = Principal::player(format!("player-{p}"));
    let mut acked = Vec::new();
    let (cid, created) = send(&registry, &who, create_gold()).await.expect("create");
    let id = created.resource_id;
    acked.push((cid, created));
    for i in 0..commands {
        let command = match i % 5 {
            0 | 3 => Command::Allocate(AllocateResource {
                resource_id: id,
                amount: (i as u64 % 7) + 1,
                reason: format!("buy {i}"),
            }),
            1 => Command::Add(AddResource {
                resource_id: id,
                amount: (i as u64 % 11) + 1,
                reason: format!("loot {i}"),
            }),
            2 => Command::Lock(LockResource {
                resource_id: id,
                reason: "trade".into(),
                duration_ms: 60_000,
            }),
            _ => Command::Unlock(UnlockResource { resource_id: id }),
        };
        // Refusals (an allocate while locked) are part of the script; only acks are recorded.
        acked.extend(send(&registry, &who, command).await);
    }
    acked
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_command_survives_dropping_everything() {
    let t = TestNode::embedded();

    // Given: eight players writing at once (so appends share group commits) ...
    let players: Vec<_> = (0..8)
        .map(|p| tokio::spawn(play(t.registry().clone(), p, 20)))
        .collect();
    let mut acked = Vec::new();
    for p in players {
        acked.extend(p.await.unwrap());
    }
    // ... and what each resource looked like at its last acknowledgement.
    let mut last: BTreeMap<ResourceId, ServerResource> = BTreeMap::new();
    for (_, reply) in &acked {
        let entry = last
            .entry(reply.resource_id)
            .or_insert_with(|| reply.resource.clone());
        if reply.version > entry.version {
            *entry = reply.resource.clone();
        }
    }
    assert_eq!(last.len(), 8);

    // When: the node stops, the store is dropped and opened again from its directory.
    let dir = t.stop().await;
    let store = dir.open();

    // Then: every acknowledged version is there, holding the command that was acknowledged.
    for (command_id, reply) in &acked {
        let log = store
            .events(reply.resource_id, reply.version - 1, 1)
            .await
            .unwrap();
        assert_eq!(
            log.len(),
            1,
            "acknowledged version {} is missing",
            reply.version
        );
        assert_eq!(log[0].command_id, *command_id);
        assert_eq!(
            store
                .find_command(*command_id)
                .await
                .unwrap()
                .map(|r| r.last_version),
            Some(reply.version)
        );
    }
    // And each resource is exactly as last acknowledged, by snapshot + tail and by full replay.
    for (id, state) in &last {
        assert_eq!(store.head(*id).await.unwrap(), state.version);
        assert_eq!(store.load(*id).await.unwrap().state().as_ref(), Some(state));
        let log = store.events(*id, 0, usize::MAX).await.unwrap();
        assert_eq!(replay(None, &log).as_ref(), Some(state));
    }

    // The read model kept through the restart equals one rebuilt from the log, view by view.
    let fresh_dir = DataDir::temp();
    let rebuilt = fresh_dir.open();
    assert_eq!(rebuild(store.as_ref(), rebuilt.as_ref()).await.unwrap(), 8);
    for (id, state) in &last {
        let live = store.get(*id).await.unwrap();
        assert_eq!(live, rebuilt.get(*id).await.unwrap(), "view of {id}");
        assert_eq!(live, Some(ClientResource::from_server(state)));
        let owner = &state.owner;
        assert_eq!(
            store.list_by_owner(owner).await.unwrap(),
            rebuilt.list_by_owner(owner).await.unwrap()
        );
    }
    // Rebuilding in place gives the same views again.
    assert_eq!(rebuild(store.as_ref(), store.as_ref()).await.unwrap(), 8);
    for id in last.keys() {
        assert_eq!(
            store.get(*id).await.unwrap(),
            rebuilt.get(*id).await.unwrap()
        );
    }
}

/// Commands applied through a bare registry: no node, no task of any kind besides the actor.
async fn commit_through_bare_registry(store: &Arc<EmbeddedStore>, id: ResourceId) -> u64 {
    let registry = bare_registry(store.clone(), &ManualClock::at(T0));
    for amount in [100, 50] {
        execute(&registry, &alice(), allocate(id, amount))
            .await
            .expect("allocate");
    }
    registry.shutdown().await;
    store.head(id).await.unwrap()
}

/// Alice's gold, created through a node on `store` that is then shut down (the store stays open).
async fn create_gold_then_stop_the_node(store: &Arc<EmbeddedStore>, dir: &DataDir) -> ResourceId {
    let t = TestNode::on(store.clone(), dir.clone(), |_| {});
    let created = execute(t.registry(), &alice(), create_gold())
        .await
        .expect("create");
    t.node.shutdown().await;
    created.resource_id
}

/// Guards against: a read model behind the log after a crash between a commit and its view (the
/// view is written in the same atomic batch as the events, so there is no such moment).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_view_is_committed_with_the_events_and_survives_a_reopen() {
    let dir = DataDir::temp();
    let store = dir.open();
    let id = create_gold_then_stop_the_node(&store, &dir).await;
    let head = commit_through_bare_registry(&store, id).await;
    assert_eq!(head, 3);
    let view = store.get(id).await.unwrap().unwrap();
    assert_eq!((view.version, view.amount), (3, 850), "current at once");
    close(store);

    let store = dir.open();
    let state = store.load(id).await.unwrap().state().unwrap();
    let view = store.get(id).await.unwrap().unwrap();
    assert_eq!(view, ClientResource::from_server(&state));
    assert_eq!((view.version, view.amount), (3, 850));
    assert_eq!(
        catch_up(store.as_ref(), store.as_ref()).await.unwrap(),
        0,
        "nothing to repair"
    );
}

/// Guards against: a lost read model that cannot be restored without replaying by hand.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catch_up_restores_a_read_model_that_was_lost() {
    let dir = DataDir::temp();
    let store = dir.open();
    let id = create_gold_then_stop_the_node(&store, &dir).await;
    commit_through_bare_registry(&store, id).await;
    store.clear().await.unwrap();
    assert_eq!(store.get(id).await.unwrap(), None);

    assert_eq!(catch_up(store.as_ref(), store.as_ref()).await.unwrap(), 1);
    let state = store.load(id).await.unwrap().state().unwrap();
    assert_eq!(
        store.get(id).await.unwrap(),
        Some(ClientResource::from_server(&state))
    );
    assert_eq!(
        store.list_by_owner(&state.owner).await.unwrap().len(),
        1,
        "listed under its owner again"
    );
}

/// Guards against: a store that loses or garbles events once the engine has flushed its write
/// buffers to disk and compacted them, or that cannot be reopened at once in the same process
/// (tables deleted by compaction are removed in the background; a reopen must not race them).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_survive_many_flushes_and_compactions_and_an_immediate_reopen() {
    const RESOURCES: usize = 100;
    const PER_RESOURCE: u64 = 1_000;
    let dir = DataDir::temp();
    // The smallest budget: 1-2 MiB write buffers, so ~100 k events (10+ MiB with their command
    // records and views) rotate, flush and compact many times over; views stored after every
    // batch, so that their keyspace does too.
    let small = EmbeddedOptions {
        cache_mb: 16,
        view_checkpoint: std::time::Duration::ZERO,
        ..EmbeddedOptions::default()
    };
    let store = Arc::new(EmbeddedStore::open_with(dir.path(), small.clone()).unwrap());
    let mut states = fill::create(&store, RESOURCES).await;
    fill::append_rounds(&store, &mut states, PER_RESOURCE).await;
    close(store);

    for options in [small, EmbeddedOptions::default()] {
        let store = Arc::new(EmbeddedStore::open_with(dir.path(), options).unwrap());
        for state in &states {
            assert_eq!(store.head(state.id).await.unwrap(), PER_RESOURCE + 1);
            let loaded = store.load(state.id).await.unwrap().state().unwrap();
            assert_eq!(&loaded, state, "the state folded from the stored log");
            assert_eq!(
                store.get(state.id).await.unwrap(),
                Some(ClientResource::from_server(state)),
                "the read model"
            );
        }
        let events = store.events(states[0].id, 0, usize::MAX).await.unwrap();
        let versions: Vec<u64> = events.iter().map(|e| e.version).collect();
        assert_eq!(versions, (1..=PER_RESOURCE + 1).collect::<Vec<_>>());
        assert_eq!(replay(None, &events).as_ref(), Some(&states[0]));
        close(store);
    }
}

/// Set in the child process of [`kill_9_cycles_lose_and_duplicate_nothing`]: the data directory
/// it writes to.
const CRASH_CHILD_DIR: &str = "WARDEN_TEST_CRASH_CHILD_DIR";
/// Processes killed with SIGKILL, one after the other, on the same data directory.
const KILL_CYCLES: usize = 20;
/// Players (one resource each) writing in every child.
const CRASH_WRITERS: usize = 4;

/// Kills the child when the parent's test ends, whatever happens, so no writer is orphaned.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One acknowledged command as the child printed it: resource, version, command id.
type Ack = (ResourceId, u64, CommandId);

/// This test runs as the parent (the test proper) and, re-executed with [`CRASH_CHILD_DIR`]
/// set, as the child that reopens the store and writes until it is killed with SIGKILL: no
/// shutdown, no drop, no flush. Twenty children in a row on one directory, each killed at a
/// random moment (often inside a group commit: commits run back to back). Every command any child
/// printed as acknowledged must then be in the store exactly once, at its version, in a log with
/// no gap, with a read model equal to the log; and each new child must be able to write again.
#[test]
fn kill_9_cycles_lose_and_duplicate_nothing() {
    use rand::RngExt;
    use std::io::{BufRead, BufReader};
    use std::process::{Command as Process, Stdio};

    if let Some(dir) = std::env::var_os(CRASH_CHILD_DIR) {
        return crash_child(std::path::Path::new(&dir));
    }
    let dir = DataDir::temp();
    let mut acks: Vec<Ack> = Vec::new();
    let mut rng = rand::rng();
    for cycle in 0..KILL_CYCLES {
        let child = Process::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "kill_9_cycles_lose_and_duplicate_nothing",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CRASH_CHILD_DIR, dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut child = KillOnDrop(child);
        let mut lines = BufReader::new(child.0.stdout.take().unwrap()).lines();
        // Let it acknowledge a random number of commands, then kill it mid-stream.
        let before_kill = rng.random_range(1..400usize);
        let mut seen = 0;
        while seen < before_kill {
            let line = lines
                .next()
                .unwrap_or_else(|| panic!("child {cycle} stopped writing after {seen} acks"))
                .unwrap();
            if let Some(ack) = parse_ack(&line) {
                acks.push(ack);
                seen += 1;
            }
        }
        child.0.kill().unwrap();
        child.0.wait().unwrap();
        acks.extend(lines.map_while(Result::ok).filter_map(|l| parse_ack(&l)));
    }

    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let store = EmbeddedStore::open(dir.path()).expect("the store opens after a crash");
        for (id, version, command_id) in &acks {
            let found = store.events(*id, version - 1, 1).await.unwrap();
            assert_eq!(
                found.first().map(|e| (e.version, e.command_id)),
                Some((*version, *command_id)),
                "acknowledged version {version} of {id} is missing after the crashes"
            );
        }
        let mut commands = std::collections::HashSet::new();
        let ids = store.resource_ids().await.unwrap();
        assert_eq!(ids.len(), CRASH_WRITERS);
        for id in ids {
            let log = store.events(id, 0, usize::MAX).await.unwrap();
            let versions: Vec<u64> = log.iter().map(|e| e.version).collect();
            assert_eq!(
                versions,
                (1..=log.len() as u64).collect::<Vec<_>>(),
                "no gap"
            );
            for e in &log {
                assert!(
                    commands.insert(e.command_id),
                    "{} applied twice",
                    e.command_id
                );
            }
            let state = replay(None, &log).unwrap();
            assert_eq!(store.head(id).await.unwrap(), log.len() as u64);
            assert_eq!(store.load(id).await.unwrap().state().as_ref(), Some(&state));
            assert_eq!(
                store.get(id).await.unwrap(),
                Some(ClientResource::from_server(&state)),
                "the read model equals the log"
            );
        }
        assert!(acks.len() >= KILL_CYCLES, "every child wrote");
    });
}

fn parse_ack(line: &str) -> Option<Ack> {
    let mut f = line.strip_prefix("ack ")?.split(' ');
    Some((
        ResourceId(f.next()?.parse().ok()?),
        f.next()?.parse().ok()?,
        CommandId(f.next()?.parse().ok()?),
    ))
}

/// The child: reopens the store, and each player finds (or creates) its wood and adds to and
/// spends from it as fast as it can, printing each acknowledgement as soon as it arrives. It
/// stops by itself after a while in case the parent vanished.
fn crash_child(dir: &std::path::Path) {
    use std::io::Write;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let t = TestNode::reopen(DataDir::at(dir), |_| {});
        let writers: Vec<_> = (0..CRASH_WRITERS)
            .map(|p| {
                let registry = t.registry().clone();
                let store = t.store.clone();
                tokio::spawn(async move {
                    let who = Principal::player(format!("crash-{p}"));
                    let print = |id: ResourceId, version: u64, cid: CommandId| {
                        let mut out = std::io::stdout().lock();
                        writeln!(out, "ack {id} {version} {cid}").unwrap();
                        out.flush().unwrap();
                    };
                    let existing = store.list_by_owner(&who.player).await.unwrap();
                    let id = match existing.first() {
                        Some(view) => view.id,
                        None => {
                            let create = create_catalogue("wood");
                            let (cid, created) = send(&registry, &who, create).await.unwrap();
                            print(created.resource_id, created.version, cid);
                            created.resource_id
                        }
                    };
                    for i in 0..20_000 {
                        let command = if i % 2 == 0 {
                            support::add(id, 1)
                        } else {
                            allocate(id, 1)
                        };
                        if let Some((cid, reply)) = send(&registry, &who, command).await {
                            print(id, reply.version, cid);
                        }
                    }
                })
            })
            .collect();
        for w in writers {
            let _ = w.await;
        }
    });
}
