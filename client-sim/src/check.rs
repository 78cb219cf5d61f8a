//! The invariant check: a pure function from what the clients were told (the [`Ledger`] of
//! acknowledged outcomes and what each subscriber saw) and the server's final state to the list
//! of [`Violation`]s. No I/O, so a test can feed it a ledger that lies.
//!
//! Per resource it checks:
//! - **amount**: final amount = initial + Σ acknowledged adds − Σ acknowledged allocates
//!   (resources that regenerate are counted as unchecked, not guessed);
//! - **version**: final version = acknowledged commands that append one event each, plus the
//!   `ResourceLockExpired` events the server recorded by itself (read from the history);
//! - **history**: versions 1..=final with no hole, each acknowledged command exactly once, no
//!   rejected command, and nothing nobody asked for;
//! - **no lost update**: no two acknowledged commands were told the same version;
//! - **subscribers**: every update followed the previous one (`base_version` = last version seen),
//!   and each subscriber ended at the final version.
//!
//! A command whose outcome stayed unknown (timeouts, dropped connections) is resolved by the
//! history: if its id is there it applied once, else it did not.

use std::collections::{BTreeMap, HashMap};
use warden_protocol::{CommandId, ErrorCode, ResourceId};

/// What a command asked for, as far as the amount and version are concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Create { initial: u64, regen_milli: u64 },
    Allocate(u64),
    Add(u64),
    Lock,
    Unlock,
}

impl Op {
    /// The amount change this op makes when it applies.
    fn delta(self) -> i128 {
        match self {
            Op::Allocate(n) => -(n as i128),
            Op::Add(n) => n as i128,
            Op::Create { .. } | Op::Lock | Op::Unlock => 0,
        }
    }
}

/// What the client was told.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// `applied` with this version (also for a `duplicate` answer to a retry).
    Applied { version: u64 },
    /// An `error` reply that means nothing was written.
    Rejected { code: ErrorCode },
    /// No answer, or one that does not say whether it was written.
    Unknown,
}

/// One command a client sent, and what it was told.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub resource_id: ResourceId,
    pub command_id: CommandId,
    pub op: Op,
    pub outcome: Outcome,
}

/// Every command the run sent, merged from all bots. A command id recorded twice (a retry) keeps
/// the most informative outcome.
#[derive(Clone, Debug, Default)]
pub struct Ledger {
    pub entries: Vec<Entry>,
}

impl Ledger {
    pub fn push(&mut self, entry: Entry) {
        self.entries.push(entry);
    }

    pub fn extend(&mut self, entries: impl IntoIterator<Item = Entry>) {
        self.entries.extend(entries);
    }

    /// The resources the ledger knows were created.
    pub fn resources(&self) -> Vec<ResourceId> {
        let mut ids: Vec<_> = self.by_resource().into_keys().collect();
        ids.sort();
        ids
    }

    /// Entries per resource, one per command id (Applied beats Unknown beats Rejected).
    fn by_resource(&self) -> BTreeMap<ResourceId, BTreeMap<CommandId, Entry>> {
        let rank = |o: &Outcome| match o {
            Outcome::Applied { .. } => 2,
            Outcome::Unknown => 1,
            Outcome::Rejected { .. } => 0,
        };
        let mut out: BTreeMap<ResourceId, BTreeMap<CommandId, Entry>> = BTreeMap::new();
        for e in &self.entries {
            let slot = out.entry(e.resource_id).or_default();
            match slot.get(&e.command_id) {
                Some(prev) if rank(&prev.outcome) >= rank(&e.outcome) => {}
                _ => {
                    slot.insert(e.command_id, e.clone());
                }
            }
        }
        out
    }
}

/// One event of a resource's history as the server reported it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HistoryRecord {
    pub version: u64,
    pub event_type: String,
    pub command_id: CommandId,
}

/// Event type the server appends by itself when a lock runs out.
pub const LOCK_EXPIRED: &str = "ResourceLockExpired";

/// The server's final word on one resource.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FinalResource {
    pub amount: u64,
    pub version: u64,
    /// The regeneration rate, when the view shows it (owner or service view).
    pub regen_milli: Option<u64>,
    /// The full history, when it could be read.
    pub history: Option<Vec<HistoryRecord>>,
}

/// What one subscriber saw of one resource.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Seen {
    /// The last version received (from `subscribed` or an update).
    pub last: u64,
    /// Updates received.
    pub updates: u64,
    /// Each update that did not follow the previous one: (expected base, got base, got version).
    pub breaks: Vec<(u64, u64, u64)>,
}

impl Seen {
    /// Starts at the version the subscription reply showed.
    pub fn at(version: u64) -> Self {
        Self {
            last: version,
            ..Self::default()
        }
    }

    /// Records an update; one that does not continue from `last` is a break (a gap when its
    /// base is ahead, a repeat when behind).
    pub fn update(&mut self, base_version: u64, version: u64) {
        self.updates += 1;
        if base_version != self.last || version <= base_version {
            self.breaks.push((self.last, base_version, version));
        }
        self.last = self.last.max(version);
    }
}

/// What each subscriber saw: subscriber name → resource → [`Seen`].
pub type SubscriberLog = BTreeMap<String, HashMap<ResourceId, Seen>>;

/// One thing that is not as the acknowledgements imply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    pub resource_id: Option<ResourceId>,
    pub what: String,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.resource_id {
            Some(id) => write!(f, "resource {id}: {}", self.what),
            None => f.write_str(&self.what),
        }
    }
}

/// The verdict.
#[derive(Clone, Debug, Default)]
pub struct CheckResult {
    pub violations: Vec<Violation>,
    pub resources_checked: usize,
    /// Resources whose amount was not checked because they regenerate.
    pub amounts_unchecked: usize,
    /// Commands with unknown outcome that the history showed applied / not applied.
    pub unknown_applied: usize,
    pub unknown_not_applied: usize,
}

impl CheckResult {
    pub fn ok(&self) -> bool {
        self.violations.is_empty()
    }
}

/// Checks the ledger and subscriber logs against the server's final state.
pub fn check(
    ledger: &Ledger,
    server: &BTreeMap<ResourceId, FinalResource>,
    subscribers: &SubscriberLog,
) -> CheckResult {
    let mut result = CheckResult::default();
    for (id, commands) in ledger.by_resource() {
        let problems = check_resource(&commands, server.get(&id), &mut result);
        result
            .violations
            .extend(problems.into_iter().map(|what| Violation {
                resource_id: Some(id),
                what,
            }));
    }
    check_subscribers(server, subscribers, &mut result);
    result
}

/// What a resource's history says: how often each command id is in it, and how many lock
/// expiries the server recorded by itself.
#[derive(Default)]
struct HistoryCounts {
    by_command: HashMap<CommandId, usize>,
    expired: u64,
}

/// What the acknowledged (and history-resolved) commands of one resource add up to.
#[derive(Default)]
struct Tally {
    /// The created amount and regeneration rate, if the create applied.
    created: Option<(u64, u64)>,
    /// The sum of the amount changes.
    delta: i128,
    /// Commands that appended one event each.
    appends: u64,
}

/// The checks of one resource: its history's shape, each command against it, the final amount
/// and version. Returns what is wrong; counts into `result`.
fn check_resource(
    commands: &BTreeMap<CommandId, Entry>,
    fin: Option<&FinalResource>,
    result: &mut CheckResult,
) -> Vec<String> {
    let mut problems = Vec::new();
    let Some(fin) = fin else {
        if commands
            .values()
            .any(|e| matches!(e.outcome, Outcome::Applied { .. }))
        {
            problems.push("acknowledged commands but the server does not have the resource".into());
        }
        return problems;
    };
    result.resources_checked += 1;
    let counts = fin
        .history
        .as_deref()
        .map(|h| count_history(h, fin.version, &mut problems))
        .unwrap_or_default();
    let tally = tally(
        commands,
        fin.history.is_some(),
        &counts,
        result,
        &mut problems,
    );
    if fin.history.is_some() {
        cross_check_history(commands, &counts, &mut problems);
    }

    let expected_version = tally.appends + counts.expired;
    if fin.version != expected_version {
        problems.push(format!(
            "version is {} but the acknowledged commands imply {expected_version} \
             ({} commands + {} lock expiries)",
            fin.version, tally.appends, counts.expired
        ));
    }
    match tally.created {
        None => problems.push("no acknowledged create for this resource".into()),
        Some((_, regen)) if regen != 0 || fin.regen_milli.is_some_and(|r| r != 0) => {
            result.amounts_unchecked += 1;
        }
        Some((initial, _)) => {
            let expected = initial as i128 + tally.delta;
            if fin.amount as i128 != expected {
                problems.push(format!(
                    "amount is {} but the acknowledged commands imply {expected}",
                    fin.amount
                ));
            }
        }
    }
    problems
}

/// Checks that `history` holds versions 1..=`version` with no hole, and counts what is in it.
fn count_history(
    history: &[HistoryRecord],
    version: u64,
    problems: &mut Vec<String>,
) -> HistoryCounts {
    for (i, h) in history.iter().enumerate() {
        if h.version != i as u64 + 1 {
            problems.push(format!(
                "history has version {} at position {} (hole or repeat)",
                h.version,
                i + 1
            ));
            break;
        }
    }
    if history.len() as u64 != version {
        problems.push(format!(
            "history has {} events but the version is {version}",
            history.len()
        ));
    }
    let mut counts = HistoryCounts::default();
    for h in history {
        if h.event_type == LOCK_EXPIRED {
            counts.expired += 1;
        } else {
            *counts.by_command.entry(h.command_id).or_default() += 1;
        }
    }
    counts
}

/// Adds up the commands that applied (an unknown outcome applied if the history has its id), and
/// checks that no two acknowledged commands were told the same version.
fn tally(
    commands: &BTreeMap<CommandId, Entry>,
    have_history: bool,
    counts: &HistoryCounts,
    result: &mut CheckResult,
    problems: &mut Vec<String>,
) -> Tally {
    let applied = |e: &Entry| match &e.outcome {
        Outcome::Applied { .. } => true,
        Outcome::Rejected { .. } => false,
        Outcome::Unknown => counts.by_command.contains_key(&e.command_id),
    };
    let mut tally = Tally::default();
    let mut told_versions: HashMap<u64, CommandId> = HashMap::new();
    for e in commands.values() {
        if e.outcome == Outcome::Unknown && have_history {
            if applied(e) {
                result.unknown_applied += 1;
            } else {
                result.unknown_not_applied += 1;
            }
        }
        if let Outcome::Applied { version } = e.outcome
            && let Some(other) = told_versions.insert(version, e.command_id)
        {
            problems.push(format!(
                "commands {other} and {} were both acknowledged with version {version} \
                 (lost update)",
                e.command_id
            ));
        }
        if !applied(e) {
            continue;
        }
        if let Op::Create {
            initial,
            regen_milli,
        } = e.op
        {
            tally.created = Some((initial, regen_milli));
        }
        tally.delta += e.op.delta();
        tally.appends += 1;
    }
    tally
}

/// Each command against the history: an acknowledged one exactly once, a rejected one never, an
/// unknown one at most once; and nothing in the history that no client sent.
fn cross_check_history(
    commands: &BTreeMap<CommandId, Entry>,
    counts: &HistoryCounts,
    problems: &mut Vec<String>,
) {
    for e in commands.values() {
        let times = counts.by_command.get(&e.command_id).copied().unwrap_or(0);
        match (&e.outcome, times) {
            (Outcome::Applied { .. }, 1) | (Outcome::Unknown, 0 | 1) => {}
            (Outcome::Rejected { .. }, 0) => {}
            (Outcome::Applied { .. }, n) => problems.push(format!(
                "acknowledged command {} is in the history {n} times",
                e.command_id
            )),
            (Outcome::Rejected { code }, _) => problems.push(format!(
                "command {} was rejected ({code}) but is in the history",
                e.command_id
            )),
            (Outcome::Unknown, n) => problems.push(format!(
                "command {} (outcome unknown) is in the history {n} times",
                e.command_id
            )),
        }
    }
    for cid in counts.by_command.keys() {
        if !commands.contains_key(cid) {
            problems.push(format!(
                "the history has command {cid}, which no client sent"
            ));
        }
    }
}

/// Every subscriber's updates followed on from the previous one, and each ended at the final
/// version.
fn check_subscribers(
    server: &BTreeMap<ResourceId, FinalResource>,
    subscribers: &SubscriberLog,
    result: &mut CheckResult,
) {
    for (name, resources) in subscribers {
        for (id, seen) in resources {
            let mut v = |what: String| {
                result.violations.push(Violation {
                    resource_id: Some(*id),
                    what: format!("subscriber {name}: {what}"),
                })
            };
            for (expected, base, version) in &seen.breaks {
                let kind = if base > expected { "gap" } else { "repeat" };
                v(format!(
                    "{kind}: after version {expected} got an update {base} -> {version}"
                ));
            }
            if let Some(fin) = server.get(id)
                && seen.last != fin.version
            {
                v(format!(
                    "last version seen is {} but the final version is {}",
                    seen.last, fin.version
                ));
            }
        }
    }
}
