//! The seed scenario run in-process: [`run`] sends the seven steps of
//! [`warden_protocol::seed::SEED_STEPS`] to a node as player123, then reads the read models.
//! `warden demo` runs it; client-sim sends the same steps over the wire; the tests check both
//! against the seed.

use warden_core::actor::{CommandError, CommandReply, CommandRequest};
use warden_core::domain::{ClientResource, Command, CommandId, Principal, ResourceId};
use warden_core::node::Node;
use warden_net::Coded;
use warden_net::request::CommandMessage;
use warden_protocol::seed::{Expect, SEED_PLAYER, SEED_STEPS, SeedStep};

/// The domain command of `step` on `resource`, the one the first step created (the first step
/// makes it, so does not use `resource`): the step's wire message through the server's one
/// conversion of a message into a command.
fn step_command(step: &SeedStep, resource: ResourceId) -> Command {
    CommandMessage::from_command(step.message(0, CommandId::new(), resource))
        .expect("every seed step is a command")
        .command
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
        let command = step_command(step, resource.unwrap_or_default());
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
