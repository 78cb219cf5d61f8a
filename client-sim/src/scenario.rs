//! The seed scenario over the wire, as player123: create gold, allocate 200, add 500, lock,
//! allocate while locked (must fail with `locked`), unlock, allocate 100; then the read models.
//!
//! Amounts are checked relative to the created amount (the seed's catalogue gives 1000) and allow
//! for the regeneration the real clock accrues between steps (gold: 0.5 per second).

use crate::conn::{Client, ConnError};
use std::fmt::Write as _;
use std::time::{Duration, Instant};
use thiserror::Error;
use warden::auth::TokenKeys;
use warden::domain::{ClientResource, CommandId, ResourceId, Role};
use warden::protocol::{ClientMessage, ServerMessage};

/// The seed's player.
pub const PLAYER: &str = "player123";
/// How long the read model may take to show the last change.
const READ_MODEL_WAIT: Duration = Duration::from_secs(5);

#[derive(Debug, Error)]
pub enum ScenarioError {
    #[error(transparent)]
    Conn(#[from] ConnError),
    #[error("creating the resource failed: {0}")]
    Create(String),
}

/// What a step should do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Expect {
    /// Succeed, moving the amount by `delta` and leaving the lock as `locked`.
    Ok { delta: i64, locked: bool },
    /// Be refused with this code.
    Refused(&'static str),
}

/// One step and what happened.
#[derive(Clone, Debug)]
pub struct Step {
    pub title: &'static str,
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
    /// player123's resources from `list`, once the read model shows the last change.
    pub read_models: Vec<ClientResource>,
    /// Whether the read model caught up with the last version.
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
            let _ = writeln!(s, "{}. {:<42} {got}  ({mark})", i + 1, step.title);
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
    let created = client
        .request(|req| {
            ClientMessage::Create(warden::protocol::Create {
                req,
                command_id: CommandId::new(),
                resource_type: "gold".into(),
                owner: None,
                params: None,
            })
        })
        .await?;
    let (id, first) = match created {
        ServerMessage::Applied { resource, .. } => (resource.id, resource),
        ServerMessage::Error { code, message, .. } => {
            return Err(ScenarioError::Create(format!("[{code}] {message}")));
        }
        other => return Err(ScenarioError::Create(format!("unexpected reply {other:?}"))),
    };
    let initial = first.amount as i64;
    let regen = first.regen_milli.unwrap_or(0);
    let mut steps = vec![Step {
        title: "create gold (seed: 1000 of 5000, +0.5/s)",
        expect: Expect::Ok {
            delta: 0,
            locked: false,
        },
        result: Ok(first.clone()),
        as_expected: true,
        problem: None,
    }];

    type Build = Box<dyn Fn(u64) -> ClientMessage>;
    let allocate = |amount: u64| -> Build {
        let command_id = CommandId::new();
        Box::new(move |req| {
            ClientMessage::Allocate(warden::protocol::Allocate {
                req,
                command_id,
                resource_id: id,
                amount,
                reason: "Purchase item".into(),
            })
        })
    };
    let script: Vec<(&'static str, Expect, Build)> = vec![
        (
            "allocate 200 \"Purchase item\"",
            Expect::Ok {
                delta: -200,
                locked: false,
            },
            allocate(200),
        ),
        (
            "add 500 \"Quest reward\"",
            Expect::Ok {
                delta: 500,
                locked: false,
            },
            {
                let command_id = CommandId::new();
                Box::new(move |req| {
                    ClientMessage::Add(warden::protocol::Add {
                        req,
                        command_id,
                        resource_id: id,
                        amount: 500,
                        reason: "Quest reward".into(),
                    })
                })
            },
        ),
        (
            "lock \"Maintenance\" for 5 minutes",
            Expect::Ok {
                delta: 0,
                locked: true,
            },
            {
                let command_id = CommandId::new();
                Box::new(move |req| {
                    ClientMessage::Lock(warden::protocol::Lock {
                        req,
                        command_id,
                        resource_id: id,
                        reason: "Maintenance".into(),
                        duration_ms: 300_000,
                    })
                })
            },
        ),
        (
            "allocate 100 while locked (must fail)",
            Expect::Refused("locked"),
            allocate(100),
        ),
        (
            "unlock",
            Expect::Ok {
                delta: 0,
                locked: false,
            },
            {
                let command_id = CommandId::new();
                Box::new(move |req| {
                    ClientMessage::Unlock(warden::protocol::Unlock {
                        req,
                        command_id,
                        resource_id: id,
                    })
                })
            },
        ),
        (
            "allocate 100 after unlock (must succeed)",
            Expect::Ok {
                delta: -100,
                locked: false,
            },
            allocate(100),
        ),
    ];

    // The amount the seed implies so far, before regeneration.
    let mut expected_amount = initial;
    let mut last_version = first.version;
    for (title, expect, build) in script {
        let reply = client.request(&*build).await?;
        let result = match reply {
            ServerMessage::Applied { resource, .. } => Ok(resource),
            ServerMessage::Error { code, message, .. } => Err((code.to_string(), message)),
            other => Err(("unexpected_reply".into(), format!("{other:?}"))),
        };
        let problem = match (&expect, &result) {
            (Expect::Ok { delta, locked }, Ok(view)) => {
                expected_amount += delta;
                last_version = view.version;
                // Regeneration since creation can only add, and at most this much.
                let allowance = (started.elapsed().as_millis() as u64 * regen).div_ceil(1_000_000);
                let got = view.amount as i64;
                if got < expected_amount || got > expected_amount + allowance as i64 {
                    Some(format!(
                        "amount {got}, expected {expected_amount} (+ up to {allowance} regenerated)"
                    ))
                } else if view.locked != *locked {
                    Some(format!("locked is {}, expected {locked}", view.locked))
                } else {
                    None
                }
            }
            (Expect::Ok { .. }, Err((code, _))) => Some(format!("refused with {code}")),
            (Expect::Refused(want), Err((code, _))) if code == want => None,
            (Expect::Refused(want), Err((code, _))) => {
                Some(format!("refused with {code}, expected {want}"))
            }
            (Expect::Refused(want), Ok(_)) => Some(format!("succeeded, expected {want}")),
        };
        steps.push(Step {
            title,
            expect,
            as_expected: problem.is_none(),
            problem,
            result,
        });
    }

    // The read model is a projection: poll until it shows the last version.
    let deadline = Instant::now() + READ_MODEL_WAIT;
    let (read_models, current) = loop {
        let list = match client
            .request(|req| ClientMessage::List(warden::protocol::List { req, owner: None }))
            .await?
        {
            ServerMessage::Resources { resources, .. } => resources,
            _ => Vec::new(),
        };
        let current = list.iter().any(|r| r.id == id && r.version == last_version);
        if current || Instant::now() >= deadline {
            break (list, current);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    Ok(ScenarioReport {
        resource_id: id,
        steps,
        read_models,
        read_models_current: current,
    })
}
