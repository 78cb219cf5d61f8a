//! Commands as values: what is asked and the id it is asked with, so a retry sends the very same
//! command again; and [`Applied`], what the server answers when one succeeds.

use std::time::Duration;
use warden_protocol::{
    Add, Allocate, ClientMessage, ClientResource, CommandId, Create, Lock, PlayerId, RequestId,
    ResourceId, ResourceParams, Unlock,
};

/// One command and its id. Build it once per player intent and send that same value until it has
/// an answer: every resend then carries the same [`CommandId`], which the server applies at most
/// once.
///
/// ```
/// use warden_client::{Command, ResourceId};
/// let gold = ResourceId::new();
/// let buy = Command::allocate(gold, 200, "Purchase item");
/// // Resent after a dropped connection: still the same command.
/// let again = buy.clone();
/// assert_eq!(buy.id(), again.id());
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Command {
    id: CommandId,
    kind: CommandKind,
}

/// What a [`Command`] asks for (docs/protocol.md §3).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CommandKind {
    /// A new resource of a type from the server's catalogue.
    Create {
        /// The catalogue type (`gold`, `mana`, `wood`, …).
        resource_type: String,
        /// The wallet's name: the type's (the default) for a type held once per owner,
        /// `<type>:<label>` for one held many times.
        name: Option<String>,
        /// Another owner than the caller (services only).
        owner: Option<PlayerId>,
        /// Parameters instead of the catalogue's (services only).
        params: Option<ResourceParams>,
    },
    /// Spend `amount` now.
    Allocate {
        /// The resource spent from.
        resource_id: ResourceId,
        /// How much (> 0).
        amount: u64,
        /// Why, for the audit trail (≤ 256 bytes; may be empty).
        reason: String,
    },
    /// Add `amount`, never past the resource's maximum.
    Add {
        /// The resource credited.
        resource_id: ResourceId,
        /// How much (> 0).
        amount: u64,
        /// Why, for the audit trail (≤ 256 bytes; may be empty).
        reason: String,
    },
    /// Block spending for `duration_ms`.
    Lock {
        /// The resource locked.
        resource_id: ResourceId,
        /// Why (≤ 256 bytes), shown to the owner while locked.
        reason: String,
        /// How long, in milliseconds (1 … 86 400 000).
        duration_ms: u64,
    },
    /// Release a lock before it expires.
    Unlock {
        /// The resource unlocked.
        resource_id: ResourceId,
    },
}

impl Command {
    /// A command of `kind` with a fresh id.
    pub fn new(kind: CommandKind) -> Self {
        Self {
            id: CommandId::new(),
            kind,
        }
    }

    /// Creates the caller's wallet of catalogue type `resource_type` (or finds it, if it
    /// exists), named as the type.
    pub fn create(resource_type: impl Into<String>) -> Self {
        Self::new(CommandKind::Create {
            resource_type: resource_type.into(),
            name: None,
            owner: None,
            params: None,
        })
    }

    /// Creates (or finds) the caller's wallet `name` of a type held many times per owner;
    /// `name` is `<type>:<label>` (`wood:camp-3`).
    pub fn create_named(resource_type: impl Into<String>, name: impl Into<String>) -> Self {
        Self::new(CommandKind::Create {
            resource_type: resource_type.into(),
            name: Some(name.into()),
            owner: None,
            params: None,
        })
    }

    /// This create under the wallet name `name` (`<type>:<label>`); other commands are unchanged.
    pub fn named(mut self, name: impl Into<String>) -> Self {
        if let CommandKind::Create { name: n, .. } = &mut self.kind {
            *n = Some(name.into());
        }
        self
    }

    /// Creates a resource for `owner`, optionally with custom parameters (services only).
    pub fn create_for(
        owner: PlayerId,
        resource_type: impl Into<String>,
        params: Option<ResourceParams>,
    ) -> Self {
        Self::new(CommandKind::Create {
            resource_type: resource_type.into(),
            name: None,
            owner: Some(owner),
            params,
        })
    }

    /// Spends `amount` of `resource` (its id, or a [`Wallet`](warden_protocol::Wallet)).
    pub fn allocate(
        resource: impl Into<ResourceId>,
        amount: u64,
        reason: impl Into<String>,
    ) -> Self {
        Self::new(CommandKind::Allocate {
            resource_id: resource.into(),
            amount,
            reason: reason.into(),
        })
    }

    /// Adds `amount` to `resource` (its id, or a [`Wallet`](warden_protocol::Wallet)).
    pub fn add(resource: impl Into<ResourceId>, amount: u64, reason: impl Into<String>) -> Self {
        Self::new(CommandKind::Add {
            resource_id: resource.into(),
            amount,
            reason: reason.into(),
        })
    }

    /// Locks `resource_id` for `duration` (whole milliseconds).
    pub fn lock(
        resource: impl Into<ResourceId>,
        reason: impl Into<String>,
        duration: Duration,
    ) -> Self {
        Self::new(CommandKind::Lock {
            resource_id: resource.into(),
            reason: reason.into(),
            duration_ms: u64::try_from(duration.as_millis()).unwrap_or(u64::MAX),
        })
    }

    /// Unlocks `resource_id`.
    pub fn unlock(resource: impl Into<ResourceId>) -> Self {
        Self::new(CommandKind::Unlock {
            resource_id: resource.into(),
        })
    }

    /// The same command with the id `id`: for a command whose id was kept somewhere (a save
    /// file, a queue of unsent commands) and is sent again after a restart.
    pub fn with_id(mut self, id: CommandId) -> Self {
        self.id = id;
        self
    }

    /// The command's id; every send of this value carries it.
    pub fn id(&self) -> CommandId {
        self.id
    }

    /// What the command asks for.
    pub fn kind(&self) -> &CommandKind {
        &self.kind
    }

    /// The resource it acts on (`None` for a create).
    pub fn resource_id(&self) -> Option<ResourceId> {
        match &self.kind {
            CommandKind::Create { .. } => None,
            CommandKind::Allocate { resource_id, .. }
            | CommandKind::Add { resource_id, .. }
            | CommandKind::Lock { resource_id, .. }
            | CommandKind::Unlock { resource_id } => Some(*resource_id),
        }
    }

    /// The wire message of this command, sent with request id `req`.
    pub fn to_message(&self, req: RequestId) -> ClientMessage {
        let command_id = self.id;
        match &self.kind {
            CommandKind::Create {
                resource_type,
                name,
                owner,
                params,
            } => ClientMessage::Create(Create {
                req,
                command_id,
                resource_type: resource_type.clone(),
                name: name.clone(),
                owner: owner.clone(),
                params: params.clone(),
            }),
            CommandKind::Allocate {
                resource_id,
                amount,
                reason,
            } => ClientMessage::Allocate(Allocate {
                req,
                command_id,
                resource_id: *resource_id,
                amount: *amount,
                reason: reason.clone(),
            }),
            CommandKind::Add {
                resource_id,
                amount,
                reason,
            } => ClientMessage::Add(Add {
                req,
                command_id,
                resource_id: *resource_id,
                amount: *amount,
                reason: reason.clone(),
            }),
            CommandKind::Lock {
                resource_id,
                reason,
                duration_ms,
            } => ClientMessage::Lock(Lock {
                req,
                command_id,
                resource_id: *resource_id,
                reason: reason.clone(),
                duration_ms: *duration_ms,
            }),
            CommandKind::Unlock { resource_id } => ClientMessage::Unlock(Unlock {
                req,
                command_id,
                resource_id: *resource_id,
            }),
        }
    }
}

/// A command succeeded: the server's `applied` reply. The events are durable when it is sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Applied {
    /// The command's id, as sent.
    pub command_id: CommandId,
    /// The resource it acted on (the new one, for a create).
    pub resource_id: ResourceId,
    /// The resource's version after the command.
    pub version: u64,
    /// The resource as it is after the command (the owner view, or the spectator view).
    pub resource: ClientResource,
    /// `true` when this id had already been applied: this answer repeats the first outcome
    /// (a retry whose first send did arrive).
    pub duplicate: bool,
    /// `true` when a create found its wallet already there: nothing was recorded, and
    /// `resource` is the wallet as it is.
    pub existing: bool,
}
