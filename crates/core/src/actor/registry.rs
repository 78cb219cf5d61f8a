//! Finds or spawns the actor of a resource, and routes commands to it.

use crate::actor::resource_actor::{Mail, ResourceActor};
use crate::actor::{ActorConfig, ActorEnv, CommandError, CommandReply, CommandRequest};
use crate::clock::Clock;
use crate::domain::{Catalogue, Command, ResourceId};
use crate::hub::Hub;
use crate::metrics::Metrics;
use crate::store::EventStore;
use dashmap::DashMap;
use dashmap::mapref::one::RefMut;
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

/// What became of a mail handed to an actor's mailbox.
enum Delivery {
    Done,
    /// The mailbox is full: here is a handle to wait for room with.
    Full {
        mail: Mail,
        mailbox: mpsc::Sender<Mail>,
        generation: u64,
    },
    /// The actor (of this generation) has stopped.
    Closed {
        mail: Mail,
        generation: u64,
    },
}

/// What the registry keeps beside the actors' environment.
struct Inner {
    /// What every actor reads (store, hub, rules, tunables, shutdown, metrics).
    env: Arc<ActorEnv>,
    /// The live actors, by resource (every command looks its actor up here).
    actors: DashMap<ResourceId, Slot, foldhash::fast::RandomState>,
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
                actors: DashMap::default(),
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
    pub async fn execute(&self, request: CommandRequest) -> Result<CommandReply, CommandError> {
        let id = request.command.target(&request.principal.player);
        let is_new = matches!(request.command, Command::Create(_));
        let (reply, answer) = oneshot::channel();
        let mut mail = Mail { request, reply };
        loop {
            if self.inner.env.shutdown.is_cancelled() {
                return Err(CommandError::ShuttingDown);
            }
            let (back, generation) = match self.deliver(id, is_new, mail) {
                Delivery::Done => return answer.await.map_err(|_| CommandError::ShuttingDown)?,
                Delivery::Full {
                    mail,
                    mailbox,
                    generation,
                } => {
                    // Back-pressure: wait for room, and count the wait.
                    self.inner.env.metrics.mailbox_full();
                    match mailbox.send(mail).await {
                        Ok(()) => return answer.await.map_err(|_| CommandError::ShuttingDown)?,
                        Err(mpsc::error::SendError(mail)) => (mail, generation),
                    }
                }
                Delivery::Closed { mail, generation } => (mail, generation),
            };
            // The actor stopped between lookup and send: forget it and start another.
            self.inner.release(id, generation);
            mail = back;
        }
    }

    /// Puts `mail` in the mailbox of `id`'s actor, spawning the actor if none is live.
    fn deliver(&self, id: ResourceId, is_new: bool, mail: Mail) -> Delivery {
        // The common case, a live actor with room: under the shard's read lock, without taking a
        // handle of the mailbox (a shared counter every sender would bump twice).
        let slot = match self.inner.actors.get(&id) {
            Some(slot) => slot,
            None => self.spawn(id, is_new).downgrade(),
        };
        let generation = slot.generation;
        match slot.mailbox.try_send(mail) {
            Ok(()) => Delivery::Done,
            Err(mpsc::error::TrySendError::Full(mail)) => Delivery::Full {
                mail,
                mailbox: slot.mailbox.clone(),
                generation,
            },
            Err(mpsc::error::TrySendError::Closed(mail)) => Delivery::Closed { mail, generation },
        }
    }

    /// The slot of `id`'s actor, spawning the actor if none is live.
    fn spawn(&self, id: ResourceId, is_new: bool) -> RefMut<'_, ResourceId, Slot> {
        self.inner.actors.entry(id).or_insert_with(|| {
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
        })
    }

    /// Stops every actor after it has finished the commands already in its mailbox.
    pub async fn shutdown(&self) {
        self.inner.env.shutdown.cancel();
        self.inner.tasks.close();
        self.inner.tasks.wait().await;
    }
}
