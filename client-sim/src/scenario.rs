//! The seed scenario over the wire, as player123: the steps of [`warden::demo::SEED_STEPS`]
//! (create gold, allocate 200, add 500, lock, allocate while locked, which must fail with `locked`,
//! unlock, allocate 100), each sent as its wire message; then the read models.
//!
//! Amounts are checked relative to the created amount (the seed's catalogue gives 1000) and allow
//! for the regeneration the real clock accrues between steps (gold: 0.5 per second).

use crate::conn::{Client, ConnError};
use std::fmt::Write as _;
use std::time::Instant;
use thiserror::Error;
use warden::auth::TokenKeys;
use warden::demo::{Expect, SEED_PLAYER, SEED_STEPS};
use warden::domain::{ClientResource, CommandId, ResourceId, Role};
use warden::protocol::{self, ClientMessage, ServerMessage};

/// The seed's player.
pub const PLAYER: &str = SEED_PLAYER;

#[derive(Debug, Error)]
pub enum ScenarioError {
    #[error(transparent)]
    Conn(#[from] ConnError),
    #[error("creating the resource failed: {0}")]
    Create(String),
    #[error("the seed created no resource")]
    NoResource,
}

/// One step and what happened.
#[derive(Clone, Debug)]
pub struct Step {
    pub title: &'static str,
    /// What the seed says of this step (its amounts with no regeneration).
    pub expect: Expect,
    /// The view after the step, or the error code and message.
    pub result: Result<ClientResource, (String, String)>,
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
        let _ = writeln!(
            s,
            "{:<38} {:<10} {:<6} {:>6} {:>6} {:<6} version",
            "id", "owner", "type", "amount", "max", "locked"
        );
        for v in &self.read_models {
            let _ = writeln!(
                s,
                "{:<38} {:<10} {:<6} {:>6} {:>6} {:<6} {}",
                v.id.to_string(),
                v.owner.as_str(),
                v.resource_type,
                v.amount,
                v.max_amount,
                v.locked,
                v.version
            );
        }
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
    // The seed's amounts assume the seed's creation amount; what was created instead (and the
    // regeneration rate) is known after the first step.
    let seed_initial = match SEED_STEPS[0].expect {
        Expect::Applied { amount, .. } => amount as i64,
        Expect::Refused(_) => 0,
    };
    let mut created: Option<ClientResource> = None;
    let mut last_version = 0;
    let mut steps = Vec::new();
    for step in &SEED_STEPS {
        // The first step creates the resource, so needs none.
        let resource = created.as_ref().map(|c| c.id).unwrap_or_default();
        let reply = client
            .request(|req| step.message(req, CommandId::new(), resource))
            .await?;
        let result = match reply {
            ServerMessage::Applied { resource, .. } => Ok(resource),
            ServerMessage::Error { code, message, .. } => Err((code.to_string(), message)),
            other => Err(("unexpected_reply".into(), format!("{other:?}"))),
        };
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
        let initial = first.amount as i64;
        let regen = first.regen_milli.unwrap_or(0);
        let problem = match (step.expect, &result) {
            (Expect::Applied { amount, locked }, Ok(view)) => {
                last_version = view.version;
                let expected_amount = initial + (amount as i64 - seed_initial);
                // Regeneration since creation can only add, and at most this much.
                let allowance = (started.elapsed().as_millis() as u64 * regen).div_ceil(1_000_000);
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
            (Expect::Refused(want), Err((code, _))) if code == want.as_str() => None,
            (Expect::Refused(want), Err((code, _))) => {
                Some(format!("refused with {code}, expected {want}"))
            }
            (Expect::Refused(want), Ok(_)) => Some(format!("succeeded, expected {want}")),
        };
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
    let read_models = match client
        .request(|req| ClientMessage::List(protocol::List { req, owner: None }))
        .await?
    {
        ServerMessage::Resources { resources, .. } => resources,
        _ => Vec::new(),
    };
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
