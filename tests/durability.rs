//! Durability: what was acknowledged is in the store after everything is dropped and reopened,
//! and the read model can always be rebuilt or repaired from the log.
//!
//! Guards against: a success reply sent before the commit (an acknowledged change missing after
//! a restart), a store that leaves its files open after drop, a read model that drifts from the
//! log, and a read model that stays behind after a crash between commit and projection.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use warden::actor::{ActorConfig, CommandReply, CommandRequest, Registry};
use warden::bus::Hub;
use warden::clock::ManualClock;
use warden::domain::{
    AddResource, AllocateResource, Catalogue, ClientResource, Command, CommandId, CreateResource,
    LockResource, Principal, ResourceId, ServerResource, UnlockResource, replay,
};
use warden::node::{Node, NodeConfig};
use warden::projection::{catch_up, rebuild};
use warden::store::embedded::EmbeddedStore;
use warden::store::{EventStore, ReadModelStore};

const T0: i64 = 1_767_225_600_000;

fn start(store: &Arc<EmbeddedStore>, clock: &ManualClock) -> Node {
    Node::start(
        store.clone(),
        store.clone(),
        NodeConfig {
            clock: Arc::new(clock.clone()),
            actors: ActorConfig {
                snapshot_every: 4,
                ..ActorConfig::default()
            },
            ..NodeConfig::default()
        },
    )
}

/// Drops the last handle to the store, which joins its writer and closes its files.
fn close(store: Arc<EmbeddedStore>) {
    let store = Arc::into_inner(store).expect("nothing else still holds the store after shutdown");
    drop(store);
}

async fn send(
    registry: &Registry,
    who: &Principal,
    command: Command,
) -> Option<(CommandId, CommandReply)> {
    let command_id = CommandId::new();
    registry
        .execute(CommandRequest {
            command_id,
            principal: who.clone(),
            command,
        })
        .await
        .ok()
        .map(|reply| (command_id, reply))
}

/// Player `p` creates gold and sends a script of commands; returns every acknowledged command.
async fn play(registry: Registry, p: usize, commands: usize) -> Vec<(CommandId, CommandReply)> {
    let who = Principal::player(format!("player-{p}"));
    let create = Command::Create(CreateResource {
        resource_type: "gold".into(),
        owner: None,
        params: None,
    });
    let mut acked = Vec::new();
    let (cid, created) = send(&registry, &who, create).await.expect("create");
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
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::at(T0);
    let store = Arc::new(EmbeddedStore::open(dir.path()).unwrap());
    let node = start(&store, &clock);

    // Given: eight players writing at once (so appends share group commits) ...
    let players: Vec<_> = (0..8)
        .map(|p| tokio::spawn(play(node.registry.clone(), p, 20)))
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
    node.shutdown().await;
    close(store);
    let store = Arc::new(EmbeddedStore::open(dir.path()).unwrap());

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
    let fresh_dir = tempfile::tempdir().unwrap();
    let rebuilt = EmbeddedStore::open(fresh_dir.path()).unwrap();
    assert_eq!(rebuild(store.as_ref(), &rebuilt).await.unwrap(), 8);
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

/// Commands applied by a registry with no read-model updater: committed, but never projected,
/// as after a crash between the commit and the read-model write.
async fn commit_without_projection(
    store: &Arc<EmbeddedStore>,
    clock: &ManualClock,
    id: ResourceId,
) -> u64 {
    let registry = Registry::new(
        store.clone(),
        Arc::new(Hub::new()),
        Arc::new(Catalogue::default()),
        Arc::new(clock.clone()),
        ActorConfig::default(),
    );
    let alice = Principal::player("alice");
    for amount in [100, 50] {
        send(
            &registry,
            &alice,
            Command::Allocate(AllocateResource {
                resource_id: id,
                amount,
                reason: String::new(),
            }),
        )
        .await
        .expect("allocate");
    }
    registry.shutdown().await;
    store.head(id).await.unwrap()
}

async fn create_with_projection(store: &Arc<EmbeddedStore>, clock: &ManualClock) -> ResourceId {
    let node = start(store, clock);
    let (_, created) = send(
        &node.registry,
        &Principal::player("alice"),
        Command::Create(CreateResource {
            resource_type: "gold".into(),
            owner: None,
            params: None,
        }),
    )
    .await
    .expect("create");
    node.shutdown().await;
    created.resource_id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_restart_catch_up_repairs_a_read_model_that_missed_updates() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::at(T0);
    let store = Arc::new(EmbeddedStore::open(dir.path()).unwrap());
    // Given: a projected resource, then two commits the read model never saw.
    let id = create_with_projection(&store, &clock).await;
    assert_eq!(store.get(id).await.unwrap().map(|v| v.version), Some(1));
    let head = commit_without_projection(&store, &clock, id).await;
    assert_eq!(head, 3);
    close(store);

    // When: the store is reopened and the read model caught up.
    let store = Arc::new(EmbeddedStore::open(dir.path()).unwrap());
    let stale = store.get(id).await.unwrap().unwrap();
    assert_eq!(
        (stale.version, stale.amount),
        (1, 1000),
        "the read model missed the updates"
    );
    assert_eq!(catch_up(store.as_ref(), store.as_ref()).await.unwrap(), 1);

    // Then: the view is the log's state, and a second catch-up has nothing to do.
    let state = store.load(id).await.unwrap().state().unwrap();
    let view = store.get(id).await.unwrap().unwrap();
    assert_eq!(view, ClientResource::from_server(&state));
    assert_eq!((view.version, view.amount), (3, 850));
    assert_eq!(catch_up(store.as_ref(), store.as_ref()).await.unwrap(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_node_repairs_its_read_model_by_itself() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::at(T0);
    let store = Arc::new(EmbeddedStore::open(dir.path()).unwrap());
    let id = create_with_projection(&store, &clock).await;
    let head = commit_without_projection(&store, &clock, id).await;
    close(store);

    let store = Arc::new(EmbeddedStore::open(dir.path()).unwrap());
    let node = start(&store, &clock);
    let view = node
        .queries
        .wait_for(id, head, Duration::from_secs(30))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(view.version, head, "the node's updater catches up at start");
    assert_eq!(view.amount, 850);
    node.shutdown().await;
}

/// Set in the child process of [`a_killed_process_loses_no_acknowledged_command`]: the data
/// directory it writes to.
const CRASH_CHILD_DIR: &str = "WARDEN_TEST_CRASH_CHILD_DIR";
/// Acknowledgements the parent waits for before it kills the child.
const ACKS_BEFORE_KILL: usize = 150;

/// Kills the child when the parent's test ends, whatever happens, so no writer is orphaned.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// This test runs twice: as the parent (the test proper) and, re-executed with
/// [`CRASH_CHILD_DIR`] set, as the child that writes until it is killed with SIGKILL: no
/// shutdown, no drop, no flush. Every command the child printed as acknowledged must be in the
/// store the parent then opens.
#[test]
fn a_killed_process_loses_no_acknowledged_command() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command as Process, Stdio};

    if let Some(dir) = std::env::var_os(CRASH_CHILD_DIR) {
        return crash_child(std::path::Path::new(&dir));
    }
    let dir = tempfile::tempdir().unwrap();
    let child = Process::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "a_killed_process_loses_no_acknowledged_command",
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
    let mut acks: Vec<(ResourceId, u64, CommandId)> = Vec::new();
    let parse = |line: &str| -> Option<(ResourceId, u64, CommandId)> {
        let mut f = line.strip_prefix("ack ")?.split(' ');
        Some((
            ResourceId(f.next()?.parse().ok()?),
            f.next()?.parse().ok()?,
            CommandId(f.next()?.parse().ok()?),
        ))
    };
    while acks.len() < ACKS_BEFORE_KILL {
        let line = lines
            .next()
            .expect("the child stopped before enough acknowledgements")
            .unwrap();
        acks.extend(parse(&line));
    }
    // SIGKILL while writes are in flight, then collect what it had acknowledged by then.
    child.0.kill().unwrap();
    child.0.wait().unwrap();
    for line in lines.map_while(Result::ok) {
        acks.extend(parse(&line));
    }

    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let store = EmbeddedStore::open(dir.path()).expect("the store opens after a crash");
        for (id, version, command_id) in &acks {
            let found = store.events(*id, version - 1, 1).await.unwrap();
            assert_eq!(
                found.first().map(|e| (e.version, e.command_id)),
                Some((*version, *command_id)),
                "acknowledged version {version} of {id} is missing after the crash"
            );
        }
        // And what is there is a well-formed log.
        for id in store.resource_ids().await.unwrap() {
            let log = store.events(id, 0, usize::MAX).await.unwrap();
            let versions: Vec<u64> = log.iter().map(|e| e.version).collect();
            assert_eq!(versions, (1..=log.len() as u64).collect::<Vec<_>>());
            assert_eq!(store.head(id).await.unwrap(), log.len() as u64);
            assert_eq!(store.load(id).await.unwrap().state(), replay(None, &log));
        }
    });
}

/// The child: four players add to their gold as fast as they can and print each
/// acknowledgement as soon as it arrives. It stops by itself after a while in case the parent
/// vanished.
fn crash_child(dir: &std::path::Path) {
    use std::io::Write;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let store = Arc::new(EmbeddedStore::open(dir).unwrap());
        let node = start(&store, &ManualClock::at(T0));
        let writers: Vec<_> = (0..4)
            .map(|p| {
                let registry = node.registry.clone();
                tokio::spawn(async move {
                    let who = Principal::player(format!("crash-{p}"));
                    let create = Command::Create(CreateResource {
                        resource_type: "wood".into(),
                        owner: None,
                        params: None,
                    });
                    let (cid, created) = send(&registry, &who, create).await.unwrap();
                    let id = created.resource_id;
                    let print = |version: u64, cid: CommandId| {
                        let mut out = std::io::stdout().lock();
                        writeln!(out, "ack {id} {version} {cid}").unwrap();
                        out.flush().unwrap();
                    };
                    print(created.version, cid);
                    for _ in 0..2_000 {
                        let add = Command::Add(AddResource {
                            resource_id: id,
                            amount: 1,
                            reason: String::new(),
                        });
                        let (cid, reply) = send(&registry, &who, add).await.unwrap();
                        print(reply.version, cid);
                    }
                })
            })
            .collect();
        for w in writers {
            let _ = w.await;
        }
    });
}
