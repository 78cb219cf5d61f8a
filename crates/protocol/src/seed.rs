//! The seed scenario as data: its seven steps (create, allocate, add, lock, a refused allocate
//! while locked, unlock, allocate), each with the message it sends and what the seed says comes
//! of it. The server's `warden demo` and every client (client-sim, the tests) run these same steps.

use crate::{
    Add, Allocate, ClientMessage, ClientResource, CommandId, Create, ErrorCode, Lock, RequestId,
    ResourceId, Unlock,
};
use std::fmt::Write;

/// The seed's player: every step is sent as this player.
pub const SEED_PLAYER: &str = "player123";

/// The seed scenario, in order. The first step creates the resource the others act on.
pub const SEED_STEPS: [SeedStep; 7] = [
    SeedStep {
        title: "create gold for player123 (1000, max 5000, +0.5/s)",
        command: SeedCommand::CreateGold,
        expect: Expect::Applied {
            amount: 1000,
            locked: false,
        },
    },
    SeedStep {
        title: "allocate 200 \"Purchase item\"",
        command: SeedCommand::Allocate {
            amount: 200,
            reason: "Purchase item",
        },
        expect: Expect::Applied {
            amount: 800,
            locked: false,
        },
    },
    SeedStep {
        title: "add 500 \"Quest reward\"",
        command: SeedCommand::Add {
            amount: 500,
            reason: "Quest reward",
        },
        expect: Expect::Applied {
            amount: 1300,
            locked: false,
        },
    },
    SeedStep {
        title: "lock \"Maintenance\" for 5 minutes",
        command: SeedCommand::Lock {
            reason: "Maintenance",
            duration_ms: 300_000,
        },
        expect: Expect::Applied {
            amount: 1300,
            locked: true,
        },
    },
    SeedStep {
        title: "allocate 100 while locked (must fail)",
        command: SeedCommand::Allocate {
            amount: 100,
            reason: "Purchase item",
        },
        expect: Expect::Refused(ErrorCode::Locked),
    },
    SeedStep {
        title: "unlock",
        command: SeedCommand::Unlock,
        expect: Expect::Applied {
            amount: 1300,
            locked: false,
        },
    },
    SeedStep {
        title: "allocate 100 after unlock (must succeed)",
        command: SeedCommand::Allocate {
            amount: 100,
            reason: "Purchase item",
        },
        expect: Expect::Applied {
            amount: 1200,
            locked: false,
        },
    },
];

/// One step of the seed: what is sent and what the seed says comes of it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SeedStep {
    /// As `warden demo` prints it.
    pub title: &'static str,
    pub command: SeedCommand,
    pub expect: Expect,
}

/// A seed step's command, without the resource it acts on (known once the first step ran).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SeedCommand {
    /// Create catalogue gold (1000 of 5000, +0.5/s) for the sender.
    CreateGold,
    Allocate {
        amount: u64,
        reason: &'static str,
    },
    Add {
        amount: u64,
        reason: &'static str,
    },
    Lock {
        reason: &'static str,
        duration_ms: u64,
    },
    Unlock,
}

/// What the seed says a step does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expect {
    /// Applied, leaving this amount (with a clock that does not move: no regeneration) and the
    /// resource locked or not.
    Applied { amount: u64, locked: bool },
    /// Refused with this code.
    Refused(ErrorCode),
}

impl SeedStep {
    /// The wire message of this step, sent with `req` and `command_id`, on `resource` (as for
    /// [`command`](Self::command)).
    pub fn message(
        &self,
        req: RequestId,
        command_id: CommandId,
        resource: ResourceId,
    ) -> ClientMessage {
        match self.command {
            SeedCommand::CreateGold => ClientMessage::Create(Create {
                req,
                command_id,
                resource_type: "gold".into(),
                name: None,
                owner: None,
                params: None,
            }),
            SeedCommand::Allocate { amount, reason } => ClientMessage::Allocate(Allocate {
                req,
                command_id,
                resource_id: resource,
                amount,
                reason: reason.into(),
            }),
            SeedCommand::Add { amount, reason } => ClientMessage::Add(Add {
                req,
                command_id,
                resource_id: resource,
                amount,
                reason: reason.into(),
            }),
            SeedCommand::Lock {
                reason,
                duration_ms,
            } => ClientMessage::Lock(Lock {
                req,
                command_id,
                resource_id: resource,
                reason: reason.into(),
                duration_ms,
            }),
            SeedCommand::Unlock => ClientMessage::Unlock(Unlock {
                req,
                command_id,
                resource_id: resource,
            }),
        }
    }
}

/// The read models as the seed lists them at its end (id, owner, wallet name, amount, max,
/// locked, version), one line each under a header: what `warden demo` and client-sim print.
pub fn read_models_table(views: &[ClientResource]) -> String {
    let mut s = format!(
        "{:<38} {:<10} {:<6} {:>6} {:>6} {:<6} version\n",
        "id", "owner", "name", "amount", "max", "locked"
    );
    for v in views {
        let _ = writeln!(
            s,
            "{:<38} {:<10} {:<6} {:>6} {:>6} {:<6} {}",
            v.id.to_string(),
            v.owner.as_str(),
            v.name.as_deref().unwrap_or(&v.resource_type),
            v.amount,
            v.max_amount,
            v.locked,
            v.version
        );
    }
    s
}
