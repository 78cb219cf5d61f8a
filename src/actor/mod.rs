//! One actor per live resource: a tokio task with a bounded mailbox that decides commands in
//! order, appends with the expected version, retries on conflict, and publishes what committed.
//!
//! - [`registry`]: finds or spawns the actor of a resource; the entry point for commands.
//! - [`resource_actor`]: the actor loop (load, decide, append, retry, publish, passivate).

mod registry;
mod resource_actor;

pub use registry::{ActorConfig, Registry};

use crate::domain::{
    ClientResource, Command, CommandId, EventEnvelope, Principal, Rejection, ResourceId,
    ServerResource,
};
use crate::store::StoreError;
use thiserror::Error;

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
