//! The one conversion of a client message into what the server handles: the five commands
//! become the domain's [`Command`] with their envelope, every other message stays as it came.

use warden_core::domain::{
    AddResource, AllocateResource, Command, CommandId, CreateResource, LockResource, UnlockResource,
};
use warden_protocol::{
    Add, Allocate, ClientMessage, Create, Get, History, List, Lock, Ping, RequestId, StateAt,
    Subscribe, Unlock, Unsubscribe,
};

/// One of the five commands, as the domain takes it, with the envelope it came in.
#[derive(Clone, Debug, PartialEq)]
pub struct CommandMessage {
    pub req: RequestId,
    pub command_id: CommandId,
    pub command: Command,
}

impl CommandMessage {
    /// The command a client message carries, or `None` for a read or control message.
    pub fn from_command(msg: ClientMessage) -> Option<Self> {
        match Request::from(msg) {
            Request::Command(m) => Some(m),
            _ => None,
        }
    }
}

/// `From<wire request> for CommandMessage`: the wire struct's fields, destructured whole (a field
/// added to one side and not the other does not compile), go into the domain command.
macro_rules! into_command {
    ($($wire:ident => $variant:ident($domain:ident { $($field:ident),* });)*) => {$(
        impl From<$wire> for CommandMessage {
            fn from(m: $wire) -> Self {
                let $wire { req, command_id, $($field),* } = m;
                Self {
                    req,
                    command_id,
                    command: Command::$variant($domain { $($field),* }),
                }
            }
        }
    )*};
}

into_command! {
    Create => Create(CreateResource { resource_type, name, owner, params });
    Allocate => Allocate(AllocateResource { resource_id, amount, reason });
    Add => Add(AddResource { resource_id, amount, reason });
    Lock => Lock(LockResource { resource_id, reason, duration_ms });
    Unlock => Unlock(UnlockResource { resource_id });
}

/// A client message sorted for handling: the five commands as one domain [`Command`] with its
/// envelope, every other message as it came.
#[derive(Clone, Debug, PartialEq)]
pub enum Request {
    Command(CommandMessage),
    Get(Get),
    List(List),
    History(History),
    Subscribe(Subscribe),
    Unsubscribe(Unsubscribe),
    StateAt(StateAt),
    Ping(Ping),
}

impl From<ClientMessage> for Request {
    fn from(msg: ClientMessage) -> Self {
        match msg {
            ClientMessage::Create(m) => Request::Command(m.into()),
            ClientMessage::Allocate(m) => Request::Command(m.into()),
            ClientMessage::Add(m) => Request::Command(m.into()),
            ClientMessage::Lock(m) => Request::Command(m.into()),
            ClientMessage::Unlock(m) => Request::Command(m.into()),
            ClientMessage::Get(m) => Request::Get(m),
            ClientMessage::List(m) => Request::List(m),
            ClientMessage::History(m) => Request::History(m),
            ClientMessage::Subscribe(m) => Request::Subscribe(m),
            ClientMessage::Unsubscribe(m) => Request::Unsubscribe(m),
            ClientMessage::StateAt(m) => Request::StateAt(m),
            ClientMessage::Ping(m) => Request::Ping(m),
        }
    }
}
