//! One actor per live resource: a tokio task with a bounded mailbox that decides commands in
//! order, appends with the expected version, retries on conflict, and publishes what committed.
//!
//! - [`registry`]: finds or spawns the actor of a resource; the entry point for commands.
//! - [`resource_actor`]: the actor loop (load, decide, append, retry, publish, passivate).

mod registry;
mod resource_actor;

pub use registry::Registry;

use crate::clock::Clock;
use crate::domain::Catalogue;
use crate::domain::{
    ClientResource, ClientSchema, Command, CommandId, EventEnvelope, Principal, Rejection,
    ResourceId, ServerResource,
};
use crate::hub::Hub;
use crate::metrics::Metrics;
use crate::store::{EventStore, StoreError};
use std::sync::Arc;
use std::time::Duration;
use thiserror::Error;
use tokio_util::sync::CancellationToken;

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

/// What every actor of one registry reads.
pub(crate) struct ActorEnv {
    /// The event log the actors load from and append to.
    pub store: Arc<dyn EventStore>,
    /// Where committed changes are published.
    pub hub: Arc<Hub>,
    /// The resource types `create` may name.
    pub catalogue: Arc<Catalogue>,
    /// "Now" for the rules.
    pub clock: Arc<dyn Clock>,
    pub config: ActorConfig,
    /// Cancelled when the registry shuts down: every actor finishes its mailbox and stops.
    pub shutdown: CancellationToken,
    pub metrics: Metrics,
}

/// A command as it reaches an actor: who sends it, and the id that makes retries safe.
#[derive(Clone, Debug)]
pub struct CommandRequest {
    pub command_id: CommandId,
    pub principal: Principal,
    pub command: Command,
}

/// A command's outcome.
#[derive(Clone, Debug)]
pub struct CommandReply {
    pub resource_id: ResourceId,
    /// The resource's version after this command (for a repeat, after the original).
    pub version: u64,
    /// The events the command committed (empty when there was nothing to record).
    pub events: Vec<EventEnvelope>,
    /// The state right after the command.
    pub resource: ServerResource,
    /// True when the command id had already been applied and this is the original outcome.
    pub duplicate: bool,
    /// True when a create found its wallet already there (nothing recorded).
    pub existing: bool,
}

impl CommandReply {
    pub fn view(&self) -> ClientResource {
        ClientResource::from_server(&self.resource)
    }
}

/// Why a command did not succeed. Three kinds never mix: the client's fault (`Rejected`,
/// `CommandIdReused`), contention that outlasted the retries, and infrastructure faults.
#[derive(Debug, Error)]
pub enum CommandError {
    #[error(transparent)]
    Rejected(#[from] Rejection),
    #[error("command id was already used for another resource")]
    CommandIdReused,
    #[error("too much contention on this resource; retry with the same command id")]
    Contention,
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the server is shutting down")]
    ShuttingDown,
}
