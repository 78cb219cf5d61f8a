//! The life of a resource actor: passivation, its own lock-expiry timer, no actor for a missing
//! resource, and a shutdown that answers what is already queued.
//!
//! Guards against: actors (and their memory) piling up for idle or non-existent resources, a
//! reloaded actor that disagrees with the log, a lock that never ends unless someone writes,
//! and commands left hanging (or silently dropped) by a shutdown.

use async_trait::async_trait;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::watch;
use warden::actor::{ActorConfig, CommandError, CommandReply, CommandRequest, Registry};
use warden::clock::{ManualClock, SystemClock};
use warden::domain::{
    AddResource, Command, CommandId, CreateResource, EventEnvelope, LockResource, Principal,
    ResourceEvent, ResourceId, replay,
};
use warden::node::{Node, NodeConfig};
use warden::protocol::Coded;
use warden::store::Backend;
use warden::store::embedded::EmbeddedStore;
use warden::store::{AppendError, AppendRequest, CommitRecord, EventStore, Loaded, StoreError};

/// How long a test waits for something that should happen on its own before failing. Generous:
/// it only bounds a failing run, a passing run does not wait for it.
const PATIENCE: Duration = Duration::from_secs(20);

fn alice() -> Principal {
    Principal::player("alice")
}

async fn execute(registry: &Registry, command: Command) -> Result<CommandReply, CommandError> {
    registry
        .execute(CommandRequest {
            command_id: CommandId::new(),
            principal: alice(),
            command,
        })
        .await
}

fn create_gold() -> Command {
    Command::Create(CreateResource {
        resource_type: "gold".into(),
        owner: None,
        params: None,
    })
}

fn add(id: ResourceId, amount: u64) -> Command {
    Command::Add(AddResource {
        resource_id: id,
        amount,
        reason: String::new(),
    })
}

/// Waits until `registry` has `n` live actors; fails after [`PATIENCE`].
async fn until_live_actors(registry: &Registry, n: usize) {
    let waited = tokio::time::timeout(PATIENCE, async {
        while registry.live_actors() != n {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    assert!(
        waited.is_ok(),
        "live actors stayed at {} instead of {n}",
        registry.live_actors()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_actor_passivates_and_the_next_command_reloads_from_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(EmbeddedStore::open(dir.path()).unwrap());
    let clock = ManualClock::at(1_767_225_600_000);
    let node = Node::start(
        &Backend::local(store.clone(), store.clone()),
        NodeConfig {
            clock: Arc::new(clock.clone()),
            actors: ActorConfig {
                idle_after: Duration::from_millis(50),
                ..ActorConfig::default()
            },
            ..NodeConfig::default()
        },
    );
    let id = execute(node.registry(), create_gold())
        .await
        .unwrap()
        .resource_id;
    for _ in 0..3 {
        clock.advance_ms(1_500);
        execute(node.registry(), add(id, 1)).await.unwrap();
    }
    assert_eq!(node.registry().live_actors(), 1);

    // When nothing happens for longer than idle_after, the actor stops.
    until_live_actors(node.registry(), 0).await;

    // The store holds the log (a snapshot comes every 64 versions) ...
    let loaded = store.load(id).await.unwrap();
    assert_eq!(
        loaded.events.iter().map(|e| e.version).collect::<Vec<_>>(),
        vec![1, 2, 3, 4]
    );
    // ... and a new actor built from it decides exactly as the old one would have.
    clock.advance_ms(1_500);
    let reply = execute(node.registry(), add(id, 1)).await.unwrap();
    assert_eq!(node.registry().live_actors(), 1);
    let log = store.events(id, 0, usize::MAX).await.unwrap();
    assert_eq!(reply.version, 5);
    assert_eq!(replay(None, &log).as_ref(), Some(&reply.resource));
    // 1000 + 3 adds of 1 + 6 s at 0.5/s.
    assert_eq!(reply.resource.balance.amount, 1000 + 4 + 3);
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lock_expires_by_itself_through_the_actors_timer() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(EmbeddedStore::open(dir.path()).unwrap());
    let node = Node::start(
        &Backend::local(store.clone(), store.clone()),
        NodeConfig {
            clock: Arc::new(SystemClock),
            ..NodeConfig::default()
        },
    );
    let id = execute(node.registry(), create_gold())
        .await
        .unwrap()
        .resource_id;
    let mut changes = node.hub().subscribe_resource(id);
    let locked = execute(
        node.registry(),
        Command::Lock(LockResource {
            resource_id: id,
            reason: "Maintenance".into(),
            duration_ms: 150,
        }),
    )
    .await
    .unwrap();
    let expires_at = locked.resource.lock.as_ref().unwrap().expires_at;

    // No command is sent: the expiry must be recorded and published by the actor itself.
    let expiry = tokio::time::timeout(PATIENCE, async {
        loop {
            let change = changes.recv().await.expect("the hub stays open");
            if let Some(e) = change
                .events
                .iter()
                .find(|e| matches!(e.event, ResourceEvent::ResourceLockExpired { .. }))
            {
                return (e.clone(), change.state.clone());
            }
        }
    })
    .await
    .expect("the lock expiry was never published");
    let (event, state): (EventEnvelope, _) = expiry;
    assert_eq!(
        event.event,
        ResourceEvent::ResourceLockExpired {
            expired_at: expires_at
        }
    );
    assert_eq!(event.version, 3);
    assert!(
        event.at >= expires_at,
        "recorded no earlier than the expiry"
    );
    assert_eq!(state.lock, None);
    assert_eq!(state.updated_by, Principal::system().player);
    assert_eq!(
        store.head(id).await.unwrap(),
        3,
        "committed, not just published"
    );

    // The read model holds that state: its view was written in the same commit.
    let view = node.queries().view(id).await.unwrap().unwrap();
    assert_eq!(view, warden::domain::ClientResource::from_server(&state));
    assert!(!view.locked);
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_to_a_missing_resource_is_not_found_and_leaves_no_actor() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(EmbeddedStore::open(dir.path()).unwrap());
    let node = Node::start(
        &Backend::local(store.clone(), store.clone()),
        NodeConfig::default(),
    );

    let missing = ResourceId::new();
    let r = execute(node.registry(), add(missing, 1)).await.unwrap_err();
    assert_eq!(r.code(), "not_found");
    until_live_actors(node.registry(), 0).await;
    assert_eq!(store.head(missing).await.unwrap(), 0, "nothing written");

    // A refused create leaves no actor either.
    let r = execute(
        node.registry(),
        Command::Create(CreateResource {
            resource_type: "diamonds".into(),
            owner: None,
            params: None,
        }),
    )
    .await
    .unwrap_err();
    assert_eq!(r.code(), "unknown_resource_type");
    until_live_actors(node.registry(), 0).await;
    assert!(store.resource_ids().await.unwrap().is_empty());
    node.shutdown().await;
}

/// An event store whose appends wait while the gate is held, so a test can keep an actor busy
/// while commands pile up in its mailbox.
struct GatedStore {
    inner: Arc<EmbeddedStore>,
    held: watch::Sender<bool>,
    /// Appends that have reached the gate.
    arrived: AtomicU64,
}

#[async_trait]
impl EventStore for GatedStore {
    async fn append(&self, req: AppendRequest) -> Result<CommitRecord, AppendError> {
        self.arrived.fetch_add(1, Ordering::SeqCst);
        let mut held = self.held.subscribe();
        let _ = held.wait_for(|held| !*held).await;
        self.inner.append(req).await
    }
    async fn load(&self, id: ResourceId) -> Result<Loaded, StoreError> {
        self.inner.load(id).await
    }
    async fn events(
        &self,
        id: ResourceId,
        after_version: u64,
        limit: usize,
    ) -> Result<Vec<EventEnvelope>, StoreError> {
        self.inner.events(id, after_version, limit).await
    }
    async fn find_command(&self, id: CommandId) -> Result<Option<CommitRecord>, StoreError> {
        self.inner.find_command(id).await
    }
    async fn head(&self, id: ResourceId) -> Result<u64, StoreError> {
        self.inner.head(id).await
    }
    async fn resource_ids(&self) -> Result<Vec<ResourceId>, StoreError> {
        self.inner.resource_ids().await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_answers_every_command_already_in_a_mailbox() {
    const QUEUED: u64 = 20;
    let dir = tempfile::tempdir().unwrap();
    let inner = Arc::new(EmbeddedStore::open(dir.path()).unwrap());
    let store = Arc::new(GatedStore {
        inner: inner.clone(),
        held: watch::channel(false).0,
        arrived: AtomicU64::new(0),
    });
    let node = Node::start(
        &Backend::local(store.clone(), inner.clone()),
        NodeConfig {
            clock: Arc::new(ManualClock::at(1_767_225_600_000)),
            ..NodeConfig::default()
        },
    );
    let registry = node.registry().clone();
    let id = execute(&registry, create_gold()).await.unwrap().resource_id;

    // Given: the actor is stuck in an append ...
    store.held.send_replace(true);
    let arrived = store.arrived.load(Ordering::SeqCst);
    let busy = tokio::spawn({
        let registry = registry.clone();
        async move { execute(&registry, add(id, 1)).await }
    });
    tokio::time::timeout(PATIENCE, async {
        while store.arrived.load(Ordering::SeqCst) == arrived {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    })
    .await
    .expect("the first command reached the store");
    // ... and more commands wait in its mailbox (one poll of `execute` delivers the mail).
    let mut queued = Vec::new();
    for _ in 0..QUEUED {
        let mut pending = Box::pin(execute(&registry, add(id, 1)));
        assert!(futures::poll!(pending.as_mut()).is_pending());
        queued.push(pending);
    }

    // When: the node shuts down while they wait.
    let shutdown = tokio::spawn(node.shutdown());
    tokio::time::timeout(PATIENCE, async {
        loop {
            match execute(&registry, add(ResourceId::new(), 1)).await {
                Err(CommandError::ShuttingDown) => break,
                _ => tokio::time::sleep(Duration::from_millis(1)).await,
            }
        }
    })
    .await
    .expect("the registry started refusing new commands");
    store.held.send_replace(false);

    // Then: every queued command is answered, with a real outcome, in order.
    let first = busy.await.unwrap().expect("the busy command completes");
    assert_eq!(first.version, 2);
    for (i, pending) in queued.into_iter().enumerate() {
        let reply = tokio::time::timeout(PATIENCE, pending)
            .await
            .expect("a queued command was left hanging")
            .expect("a queued command is applied, not dropped");
        assert_eq!(reply.version, 3 + i as u64);
    }
    tokio::time::timeout(PATIENCE, shutdown)
        .await
        .expect("shutdown finishes")
        .unwrap();
    assert_eq!(inner.head(id).await.unwrap(), 2 + QUEUED);
    // And the read model was given everything that was published before the node stopped.
    use warden::store::ReadModelStore;
    let view = inner.get(id).await.unwrap().unwrap();
    assert_eq!(view.version, 2 + QUEUED);
    // Nothing is accepted afterwards.
    let late = execute(&registry, add(id, 1)).await.unwrap_err();
    assert_eq!(late.code(), "shutting_down");
}
