//! Finds or spawns the actor of a resource, and routes commands to it.

use crate::actor::resource_actor::{Mail, ResourceActor};
use crate::actor::{ActorConfig, ActorEnv, CommandError, CommandReply, CommandRequest};
use crate::clock::Clock;
use crate::domain::{Catalogue, Command, ResourceId};
use crate::hub::Hub;
use crate::metrics::Metrics;
use crate::store::EventStore;
use dashmap::DashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// The actor's slot: its mailbox, and a generation so a stopping actor removes only itself.
struct Slot {
    mailbox: mpsc::Sender<Mail>,
    generation: u64,
}

/// What the registry keeps beside the actors' environment.
struct Inner {
    /// What every actor reads (store, hub, rules, tunables, shutdown, metrics).
    env: Arc<ActorEnv>,
    /// The live actors, by resource.
    actors: DashMap<ResourceId, Slot>,
    /// Every actor task, so shutdown can wait for them.
    tasks: TaskTracker,
    /// The next actor's generation.
    generations: AtomicU64,
}

impl Inner {
    /// Forgets the actor of `id` if it is still generation `generation`.
    fn release(&self, id: ResourceId, generation: u64) {
        self.actors
            .remove_if(&id, |_, slot| slot.generation == generation);
    }
}

/// The entry point for commands on one node. Cheap to clone.
#[derive(Clone)]
pub struct Registry {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("live_actors", &self.inner.actors.len())
            .field("config", &self.inner.env.config)
            .finish_non_exhaustive()
    }
}

impl Registry {
    /// A registry that records no metrics.
    pub fn new(
        store: Arc<dyn EventStore>,
        hub: Arc<Hub>,
        catalogue: Arc<Catalogue>,
        clock: Arc<dyn Clock>,
        config: ActorConfig,
    ) -> Self {
        Self::with_metrics(store, hub, catalogue, clock, config, Metrics::off())
    }

    /// A registry whose actors record into `metrics`.
    pub fn with_metrics(
        store: Arc<dyn EventStore>,
        hub: Arc<Hub>,
        catalogue: Arc<Catalogue>,
        clock: Arc<dyn Clock>,
        config: ActorConfig,
        metrics: Metrics,
    ) -> Self {
        let env = Arc::new(ActorEnv {
            store,
            hub,
            catalogue,
            clock,
            config,
            shutdown: CancellationToken::new(),
            metrics,
        });
        Self {
            inner: Arc::new(Inner {
                env,
                actors: DashMap::new(),
                tasks: TaskTracker::new(),
                generations: AtomicU64::new(0),
            }),
        }
    }

    pub fn store(&self) -> &Arc<dyn EventStore> {
        &self.inner.env.store
    }
    pub fn hub(&self) -> &Arc<Hub> {
        &self.inner.env.hub
    }
    pub fn catalogue(&self) -> &Arc<Catalogue> {
        &self.inner.env.catalogue
    }
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.inner.env.clock
    }

    /// Live actors (for metrics and tests of passivation).
    pub fn live_actors(&self) -> usize {
        self.inner.actors.len()
    }

    /// Runs a command through its resource's actor and waits for the outcome.
    pub async fn execute(&self, mut request: CommandRequest) -> Result<CommandReply, CommandError> {
        let id = match &request.command {
            Command::Create(_) => ResourceId::new(),
            other => other
                .resource_id()
                .expect("every command but create names its resource"),
        };
        loop {
            if self.inner.env.shutdown.is_cancelled() {
                return Err(CommandError::ShuttingDown);
            }
            let (mailbox, generation) =
                self.mailbox(id, matches!(request.command, Command::Create(_)));
            let (reply, answer) = oneshot::channel();
            let sent = match mailbox.try_send(Mail { request, reply }) {
                Ok(()) => Ok(()),
                Err(mpsc::error::TrySendError::Full(mail)) => {
                    // Back-pressure: wait for room, and count the wait.
                    self.inner.env.metrics.mailbox_full();
                    mailbox.send(mail).await
                }
                Err(mpsc::error::TrySendError::Closed(mail)) => Err(mpsc::error::SendError(mail)),
            };
            match sent {
                Ok(()) => return answer.await.map_err(|_| CommandError::ShuttingDown)?,
                Err(mpsc::error::SendError(mail)) => {
                    // The actor stopped between lookup and send: forget it and start another.
                    self.inner.release(id, generation);
                    request = mail.request;
                }
            }
        }
    }

    /// The mailbox of `id`'s actor, spawning the actor if none is live.
    fn mailbox(&self, id: ResourceId, is_new: bool) -> (mpsc::Sender<Mail>, u64) {
        // The common case, a live actor, under the shard's read lock only.
        if let Some(slot) = self.inner.actors.get(&id) {
            return (slot.mailbox.clone(), slot.generation);
        }
        let slot = self.inner.actors.entry(id).or_insert_with(|| {
            let generation = self.inner.generations.fetch_add(1, Ordering::Relaxed);
            let (tx, rx) = mpsc::channel(self.inner.env.config.mailbox);
            // A stopping actor leaves the registry first (so new commands go to a new actor),
            // then finishes what is queued.
            let inner = Arc::downgrade(&self.inner);
            let release = Box::new(move || {
                if let Some(inner) = inner.upgrade() {
                    inner.release(id, generation);
                }
            });
            let actor = ResourceActor::new(id, is_new, rx, self.inner.env.clone(), release);
            self.inner.tasks.spawn(actor.run());
            Slot {
                mailbox: tx,
                generation,
            }
        });
        (slot.mailbox.clone(), slot.generation)
    }

    /// Stops every actor after it has finished the commands already in its mailbox.
    pub async fn shutdown(&self) {
        self.inner.env.shutdown.cancel();
        self.inner.tasks.close();
        self.inner.tasks.wait().await;
    }
}
