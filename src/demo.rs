//! The seed scenario run against the core: create, allocate, add, lock, a refused allocate while
//! locked, unlock, allocate; then the read models and the audit trail.

use crate::actor::{CommandError, CommandReply, CommandRequest};
use crate::domain::{
    AddResource, AllocateResource, ClientResource, Command, CommandId, CreateResource,
    LockResource, Principal, ResourceId, UnlockResource,
};
use crate::node::Node;
use crate::protocol::Coded;

/// One step's outcome as the scenario saw it.
#[derive(Debug)]
pub struct Step {
    pub title: &'static str,
    /// Whether the seed expects this step to succeed.
    pub expect_ok: bool,
    pub outcome: Result<CommandReply, CommandError>,
}

impl Step {
    /// Whether the step went as the seed says it should (step 5 must fail because of the lock).
    pub fn as_expected(&self) -> bool {
        match &self.outcome {
            Ok(_) => self.expect_ok,
            Err(e) => {
                !self.expect_ok
                    && matches!(
                        e,
                        CommandError::Rejected(crate::domain::Rejection::Locked { .. })
                    )
            }
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
    let player = Principal::player("player123");
    let send = |command: Command| {
        let registry = node.registry().clone();
        let principal = player.clone();
        async move {
            registry
                .execute(CommandRequest {
                    command_id: CommandId::new(),
                    principal,
                    command,
                })
                .await
        }
    };
    let mut steps = Vec::new();
    let created = send(Command::Create(CreateResource {
        resource_type: "gold".into(),
        owner: None,
        params: None,
    }))
    .await;
    let id = match &created {
        Ok(reply) => reply.resource_id,
        Err(e) => anyhow::bail!("creating the resource failed: {e}"),
    };
    steps.push(Step {
        title: "create gold for player123 (1000, max 5000, +0.5/s)",
        expect_ok: true,
        outcome: created,
    });
    let script: [(&'static str, bool, Command); 6] = [
        (
            "allocate 200 \"Purchase item\"",
            true,
            Command::Allocate(AllocateResource {
                resource_id: id,
                amount: 200,
                reason: "Purchase item".into(),
            }),
        ),
        (
            "add 500 \"Quest reward\"",
            true,
            Command::Add(AddResource {
                resource_id: id,
                amount: 500,
                reason: "Quest reward".into(),
            }),
        ),
        (
            "lock \"Maintenance\" for 5 minutes",
            true,
            Command::Lock(LockResource {
                resource_id: id,
                reason: "Maintenance".into(),
                duration_ms: 300_000,
            }),
        ),
        (
            "allocate 100 while locked (must fail)",
            false,
            Command::Allocate(AllocateResource {
                resource_id: id,
                amount: 100,
                reason: "Purchase item".into(),
            }),
        ),
        (
            "unlock",
            true,
            Command::Unlock(UnlockResource { resource_id: id }),
        ),
        (
            "allocate 100 after unlock (must succeed)",
            true,
            Command::Allocate(AllocateResource {
                resource_id: id,
                amount: 100,
                reason: "Purchase item".into(),
            }),
        ),
    ];
    for (title, expect_ok, command) in script {
        steps.push(Step {
            title,
            expect_ok,
            outcome: send(command).await,
        });
    }
    // Each view was written with its command's commit: the read model is current already.
    let read_models = node.queries().list(&player, &player.player).await?;
    Ok(DemoReport {
        resource_id: id,
        steps,
        read_models,
    })
}
