//! Finds or spawns the actor of a resource, and routes commands to it.

use crate::actor::resource_actor::{Mail, ResourceActor};
use crate::actor::{CommandError, CommandReply, CommandRequest};
use crate::hub::Hub;
use crate::clock::Clock;
use crate::domain::{Catalogue, Command, ResourceId};
use crate::metrics::Metrics;
use crate::store::EventStore;
use dashmap::DashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Tunables of the actors, with documented defaults.
#[derive(Clone, Debug)]
pub struct ActorConfig {
    /// Commands that may queue for one resource; senders wait when it is full (back-pressure).
    pub mailbox: usize,
    /// An actor with no command for this long (and no lock to expire) stops and frees its memory.
    pub idle_after: Duration,
    /// Attempts at a command that keeps meeting version conflicts before answering `conflict`.
    pub max_attempts: u32,
    /// Upper bound of the random back-off before the second attempt; it doubles per attempt.
    pub backoff: Duration,
    /// Most commands an actor takes from its mailbox at once: it decides them one after another
    /// on the state each leads to and commits them in one `append_many` (one group commit), so a
    /// hot resource is not held to one fsync per command. `1` commits each command before
    /// deciding the next.
    pub pipeline: usize,
}

impl Default for ActorConfig {
    fn default() -> Self {
        Self {
            mailbox: 256,
            idle_after: Duration::from_secs(60),
            max_attempts: 10,
            backoff: Duration::from_millis(2),
            pipeline: 256,
        }
    }
}

/// The actor's slot: its mailbox, and a generation so a stopping actor removes only itself.
struct Slot {
    mailbox: mpsc::Sender<Mail>,
    generation: u64,
}

pub(crate) struct Shared {
    pub store: Arc<dyn EventStore>,
    pub hub: Arc<Hub>,
    pub catalogue: Arc<Catalogue>,
    pub clock: Arc<dyn Clock>,
    pub config: ActorConfig,
    pub shutdown: CancellationToken,
    pub metrics: Metrics,
    actors: DashMap<ResourceId, Slot>,
    tasks: TaskTracker,
    generations: AtomicU64,
}

impl Shared {
    /// Forgets the actor of `id` if it is still generation `generation`.
    pub fn release(&self, id: ResourceId, generation: u64) {
        self.actors
            .remove_if(&id, |_, slot| slot.generation == generation);
    }
}

/// The entry point for commands on one node. Cheap to clone.
#[derive(Clone)]
pub struct Registry {
    shared: Arc<Shared>,
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
        Self {
            shared: Arc::new(Shared {
                store,
                hub,
                catalogue,
                clock,
                config,
                shutdown: CancellationToken::new(),
                metrics,
                actors: DashMap::new(),
                tasks: TaskTracker::new(),
                generations: AtomicU64::new(0),
            }),
        }
    }

    pub fn store(&self) -> &Arc<dyn EventStore> {
        &self.shared.store
    }
    pub fn hub(&self) -> &Arc<Hub> {
        &self.shared.hub
    }
    pub fn catalogue(&self) -> &Arc<Catalogue> {
        &self.shared.catalogue
    }
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.shared.clock
    }

    /// Live actors (for metrics and tests of passivation).
    pub fn live_actors(&self) -> usize {
        self.shared.actors.len()
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
            if self.shared.shutdown.is_cancelled() {
                return Err(CommandError::ShuttingDown);
            }
            let (mailbox, generation) =
                self.mailbox(id, matches!(request.command, Command::Create(_)));
            let (reply, answer) = oneshot::channel();
            let sent = match mailbox.try_send(Mail { request, reply }) {
                Ok(()) => Ok(()),
                Err(mpsc::error::TrySendError::Full(mail)) => {
                    // Back-pressure: wait for room, and count the wait.
                    self.shared.metrics.mailbox_full();
                    mailbox.send(mail).await
                }
                Err(mpsc::error::TrySendError::Closed(mail)) => Err(mpsc::error::SendError(mail)),
            };
            match sent {
                Ok(()) => return answer.await.map_err(|_| CommandError::ShuttingDown)?,
                Err(mpsc::error::SendError(mail)) => {
                    // The actor stopped between lookup and send: forget it and start another.
                    self.shared.release(id, generation);
                    request = mail.request;
                }
            }
        }
    }

    /// The mailbox of `id`'s actor, spawning the actor if none is live.
    fn mailbox(&self, id: ResourceId, is_new: bool) -> (mpsc::Sender<Mail>, u64) {
        let slot = self.shared.actors.entry(id).or_insert_with(|| {
            let generation = self.shared.generations.fetch_add(1, Ordering::Relaxed);
            let (tx, rx) = mpsc::channel(self.shared.config.mailbox);
            let actor = ResourceActor::new(id, generation, is_new, rx, self.shared.clone());
            self.shared.tasks.spawn(actor.run());
            Slot {
                mailbox: tx,
                generation,
            }
        });
        (slot.mailbox.clone(), slot.generation)
    }

    /// Stops every actor after it has finished the commands already in its mailbox.
    pub async fn shutdown(&self) {
        self.shared.shutdown.cancel();
        self.shared.tasks.close();
        self.shared.tasks.wait().await;
    }
}
