//! The seed scenario over the wire, as player123: the steps of
//! [`warden_protocol::seed::SEED_STEPS`] (create gold, allocate 200, add 500, lock, allocate
//! while locked, which must fail with `locked`, unlock, allocate 100), each sent as its wire
//! message; then the read models.
//!
//! Amounts are checked relative to the created amount (the seed's catalogue gives 1000) and allow
//! for the regeneration the real clock accrues between steps (gold: 0.5 per second).

use crate::tokens::TokenKeys;
use std::fmt::Write as _;
use std::time::{Duration, Instant};
use thiserror::Error;
use warden_client::{Client, ClientError};
use warden_protocol::seed::{Expect, SEED_PLAYER, SEED_STEPS, SeedStep};
use warden_protocol::{ClientResource, CommandId, ErrorCode, ResourceId, Role, ServerMessage};

/// The seed's player.
pub const PLAYER: &str = SEED_PLAYER;

#[derive(Debug, Error)]
pub enum ScenarioError {
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error("creating the resource failed: {0}")]
    Create(String),
    #[error("the seed created no resource")]
    NoResource,
    #[error("unexpected reply to {step:?}: {reply}")]
    Unexpected { step: &'static str, reply: String },
}

/// One step and what happened.
#[derive(Clone, Debug)]
pub struct Step {
    pub title: &'static str,
    /// What the seed says of this step (its amounts with no regeneration).
    pub expect: Expect,
    /// The view after the step, or the error code and message.
    pub result: Result<ClientResource, (ErrorCode, String)>,
    pub as_expected: bool,
    /// Why it is not as expected.
    pub problem: Option<String>,
}

#[derive(Clone, Debug)]
pub struct ScenarioReport {
    pub resource_id: ResourceId,
    pub steps: Vec<Step>,
    /// player123's resources from `list`, read once after the last step.
    pub read_models: Vec<ClientResource>,
    /// Whether the read model showed the last version at once (a view is written with its
    /// commit, before the reply).
    pub read_models_current: bool,
}

impl ScenarioReport {
    /// Every step went as the seed says, and the read model shows the final state.
    pub fn ok(&self) -> bool {
        self.steps.iter().all(|s| s.as_expected) && self.read_models_current
    }

    pub fn to_text(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "Warden seed scenario over WebSocket, as {PLAYER}");
        let _ = writeln!(s, "resource {}", self.resource_id);
        for (i, step) in self.steps.iter().enumerate() {
            let got = match &step.result {
                Ok(v) => format!(
                    "ok       amount {}/{}  locked {}  version {}",
                    v.amount, v.max_amount, v.locked, v.version
                ),
                Err((code, msg)) => format!("refused  [{code}] {msg}"),
            };
            let mark = if step.as_expected {
                "as expected".to_owned()
            } else {
                format!("UNEXPECTED: {}", step.problem.as_deref().unwrap_or("?"))
            };
            let _ = writeln!(s, "{}. {:<50} {got}  ({mark})", i + 1, step.title);
        }
        let _ = writeln!(s, "\nread models of {PLAYER} (client schema, from `list`):");
        s.push_str(&warden_protocol::seed::read_models_table(&self.read_models));
        if !self.read_models_current {
            let _ = writeln!(s, "UNEXPECTED: the read model did not show the last change");
        }
        let _ = writeln!(
            s,
            "\nscenario: {}",
            if self.ok() { "PASSED" } else { "FAILED" }
        );
        s
    }
}

/// Runs the scenario against the server at `url`.
pub async fn run(url: &str, keys: &TokenKeys) -> Result<ScenarioReport, ScenarioError> {
    let token = crate::tokens::mint(keys, PLAYER, Role::Player);
    let client = Client::connect(url, &token).await?;
    let started = Instant::now();
    let mut created: Option<ClientResource> = None;
    let mut last_version = 0;
    let mut steps = Vec::new();
    for step in &SEED_STEPS {
        // The first step creates the resource, so needs none.
        let resource = created.as_ref().map(|c| c.id).unwrap_or_default();
        let result = send_step(&client, step, resource).await?;
        let first = match (&created, &result) {
            (None, Ok(view)) => {
                created = Some(view.clone());
                view
            }
            (None, Err((code, message))) => {
                return Err(ScenarioError::Create(format!("[{code}] {message}")));
            }
            (Some(first), _) => first,
        };
        if let Ok(view) = &result {
            last_version = view.version;
        }
        let problem = judge(step.expect, &result, first, started.elapsed());
        steps.push(Step {
            title: step.title,
            expect: step.expect,
            as_expected: problem.is_none(),
            problem,
            result,
        });
    }
    let id = created.map(|c| c.id).ok_or(ScenarioError::NoResource)?;

    // Views are written with each commit, before its reply: the list shows the last version now.
    let read_models = client.list(None).await?;
    let current = read_models
        .iter()
        .any(|r| r.id == id && r.version == last_version);
    Ok(ScenarioReport {
        resource_id: id,
        steps,
        read_models,
        read_models_current: current,
    })
}

/// Sends one step (its own wire message, with a fresh command id) and returns the view after it,
/// or the server's refusal.
async fn send_step(
    client: &Client,
    step: &SeedStep,
    resource: ResourceId,
) -> Result<Result<ClientResource, (ErrorCode, String)>, ScenarioError> {
    match client
        .request(|req| step.message(req, CommandId::new(), resource))
        .await
    {
        Ok(ServerMessage::Applied { resource, .. }) => Ok(Ok(resource)),
        Ok(other) => Err(ScenarioError::Unexpected {
            step: step.title,
            reply: format!("{other:?}"),
        }),
        Err(ClientError::Refused { code, message }) => Ok(Err((code, message))),
        Err(e) => Err(e.into()),
    }
}

/// What is wrong with a step's `result`, given what the seed expects of it, the resource as the
/// first step created it and the time since: `None` when it is as expected.
fn judge(
    expect: Expect,
    result: &Result<ClientResource, (ErrorCode, String)>,
    first: &ClientResource,
    elapsed: Duration,
) -> Option<String> {
    // The seed's amounts assume the seed's creation amount; what was created instead (and the
    // regeneration rate) is known after the first step.
    let seed_initial = match SEED_STEPS[0].expect {
        Expect::Applied { amount, .. } => amount as i64,
        Expect::Refused(_) => 0,
    };
    let initial = first.amount as i64;
    let regen = first.regen_milli.unwrap_or(0);
    match (expect, result) {
        (Expect::Applied { amount, locked }, Ok(view)) => {
            let expected_amount = initial + (amount as i64 - seed_initial);
            // Regeneration since creation can only add, and at most this much.
            let allowance = (elapsed.as_millis() as u64 * regen).div_ceil(1_000_000);
            let got = view.amount as i64;
            if got < expected_amount || got > expected_amount + allowance as i64 {
                Some(format!(
                    "amount {got}, expected {expected_amount} (+ up to {allowance} regenerated)"
                ))
            } else if view.locked != locked {
                Some(format!("locked is {}, expected {locked}", view.locked))
            } else {
                None
            }
        }
        (Expect::Applied { .. }, Err((code, _))) => Some(format!("refused with {code}")),
        (Expect::Refused(want), Err((code, _))) if *code == want => None,
        (Expect::Refused(want), Err((code, _))) => {
            Some(format!("refused with {code}, expected {want}"))
        }
        (Expect::Refused(want), Ok(_)) => Some(format!("succeeded, expected {want}")),
    }
}
