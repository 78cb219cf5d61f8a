//! The seed scenario: its seven steps as data ([`SEED_STEPS`]: create, allocate, add, lock, a
//! refused allocate while locked, unlock, allocate), and [`run`], which sends them to a node and
//! then reads the read models. `warden demo` runs it in-process; client-sim sends the same steps
//! over the wire; the tests check both against the seed.

use crate::actor::{CommandError, CommandReply, CommandRequest};
use crate::domain::{
    AddResource, AllocateResource, ClientResource, Command, CommandId, CreateResource,
    LockResource, Principal, ResourceId, UnlockResource,
};
use crate::node::Node;
use crate::protocol::{self, ClientMessage, Coded, ErrorCode, RequestId};

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
    /// The domain command of this step on `resource`, the one the first step created (the first
    /// step makes it, so does not use `resource`).
    pub fn command(&self, resource: ResourceId) -> Command {
        match self.command {
            SeedCommand::CreateGold => Command::Create(CreateResource {
                resource_type: "gold".into(),
                owner: None,
                params: None,
            }),
            SeedCommand::Allocate { amount, reason } => Command::Allocate(AllocateResource {
                resource_id: resource,
                amount,
                reason: reason.into(),
            }),
            SeedCommand::Add { amount, reason } => Command::Add(AddResource {
                resource_id: resource,
                amount,
                reason: reason.into(),
            }),
            SeedCommand::Lock {
                reason,
                duration_ms,
            } => Command::Lock(LockResource {
                resource_id: resource,
                reason: reason.into(),
                duration_ms,
            }),
            SeedCommand::Unlock => Command::Unlock(UnlockResource {
                resource_id: resource,
            }),
        }
    }

    /// The wire message of this step, sent with `req` and `command_id`, on `resource` (as for
    /// [`command`](Self::command)).
    pub fn message(
        &self,
        req: RequestId,
        command_id: CommandId,
        resource: ResourceId,
    ) -> ClientMessage {
        match self.command {
            SeedCommand::CreateGold => ClientMessage::Create(protocol::Create {
                req,
                command_id,
                resource_type: "gold".into(),
                owner: None,
                params: None,
            }),
            SeedCommand::Allocate { amount, reason } => {
                ClientMessage::Allocate(protocol::Allocate {
                    req,
                    command_id,
                    resource_id: resource,
                    amount,
                    reason: reason.into(),
                })
            }
            SeedCommand::Add { amount, reason } => ClientMessage::Add(protocol::Add {
                req,
                command_id,
                resource_id: resource,
                amount,
                reason: reason.into(),
            }),
            SeedCommand::Lock {
                reason,
                duration_ms,
            } => ClientMessage::Lock(protocol::Lock {
                req,
                command_id,
                resource_id: resource,
                reason: reason.into(),
                duration_ms,
            }),
            SeedCommand::Unlock => ClientMessage::Unlock(protocol::Unlock {
                req,
                command_id,
                resource_id: resource,
            }),
        }
    }
}

/// One step's outcome as the scenario saw it.
#[derive(Debug)]
pub struct Step {
    pub title: &'static str,
    /// What the seed says of this step.
    pub expect: Expect,
    pub outcome: Result<CommandReply, CommandError>,
}

impl Step {
    /// Whether the step went as the seed says it should: applied, or refused with the seed's code
    /// (step 5 must fail because of the lock).
    pub fn as_expected(&self) -> bool {
        match (&self.outcome, self.expect) {
            (Ok(_), Expect::Applied { .. }) => true,
            (Err(e), Expect::Refused(code)) => e.code() == code,
            _ => false,
        }
    }

    pub fn describe(&self) -> String {
        match &self.outcome {
            Ok(r) => {
                let v = r.view();
                format!(
                    "ok       amount {}/{}  locked {}  version {}",
                    v.amount, v.max_amount, v.locked, v.version
                )
            }
            Err(e) => format!("refused  [{}] {}", e.code(), e),
        }
    }
}

/// Everything the scenario produced.
#[derive(Debug)]
pub struct DemoReport {
    pub resource_id: ResourceId,
    pub steps: Vec<Step>,
    /// The read model of player123 once it has caught up.
    pub read_models: Vec<ClientResource>,
}

/// Runs the seven steps of the seed as player123 on `node`.
pub async fn run(node: &Node) -> anyhow::Result<DemoReport> {
    let player = Principal::player(SEED_PLAYER);
    let mut steps = Vec::new();
    let mut resource = None;
    for step in &SEED_STEPS {
        // The first step creates the resource, so needs none.
        let command = step.command(resource.unwrap_or_default());
        let outcome = node
            .registry()
            .execute(CommandRequest {
                command_id: CommandId::new(),
                principal: player.clone(),
                command,
            })
            .await;
        if resource.is_none() {
            match &outcome {
                Ok(reply) => resource = Some(reply.resource_id),
                Err(e) => anyhow::bail!("creating the resource failed: {e}"),
            }
        }
        steps.push(Step {
            title: step.title,
            expect: step.expect,
            outcome,
        });
    }
    let resource_id = resource.ok_or_else(|| anyhow::anyhow!("the seed has no steps"))?;
    // Each view was written with its command's commit: the read model is current already.
    let read_models = node.queries().list(&player, &player.player).await?;
    Ok(DemoReport {
        resource_id,
        steps,
        read_models,
    })
}
