//! The swarm's report: one serialisable struct, printed as text for a person or as one JSON
//! object for a script (`--json`).

use crate::check::CheckResult;
use crate::config::SwarmConfig;
use crate::metrics::{Percentiles, Recorder, SecondStats};
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

/// Most violations listed in the report (all are counted).
const LISTED_VIOLATIONS: usize = 50;

/// Delivery lag of updates to spectators, in microseconds (millisecond resolution: the view's
/// `updated_at` is in ms).
#[derive(Clone, Debug, Default, Serialize)]
pub struct Lag {
    pub count: u64,
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub max: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct SwarmReport {
    /// `closed` (send, await, next) or `open` (scheduled sends at `rate`).
    pub mode: &'static str,
    pub bots: usize,
    pub spectators: usize,
    pub rate: Option<f64>,
    /// Seconds during which bots were sending.
    pub duration_s: f64,
    /// Commands answered (applied or refused).
    pub commands: u64,
    pub commands_per_s: f64,
    /// Command latency, from send (closed-loop) or scheduled send (open-loop) to reply.
    pub latency_us: Percentiles,
    /// Latency of the commands on the shared guild resources alone (hot, contended).
    pub guild_latency_us: Percentiles,
    pub queries: u64,
    pub query_latency_us: Percentiles,
    /// Error replies by code, and client-side failures (`timeout`, `disconnected`, `connect_*`).
    pub errors: BTreeMap<String, u64>,
    pub delivery_lag_us: Lag,
    pub updates_received: u64,
    /// Most connections held at once (bots and spectators).
    pub connections: usize,
    pub connect_failures: u64,
    /// Resources audited and (subscriber, resource) pairs watched.
    pub resources_checked: usize,
    pub subscriptions_checked: usize,
    pub amounts_unchecked: usize,
    pub unknown_outcomes_applied: usize,
    pub unknown_outcomes_not_applied: usize,
    pub invariant_violations: usize,
    pub violations: Vec<String>,
    /// Per second of the run: commands answered and their latency.
    pub timeline: Vec<SecondStats>,
    /// Where the picture was written.
    pub plot: Option<String>,
    /// The server's own figures over the run, from its `/metrics` (with `--admin-url`).
    pub server: Option<crate::server::ServerFigures>,
    #[serde(skip)]
    pub latency_histogram: Option<hdrhistogram::Histogram<u64>>,
}

impl SwarmReport {
    pub fn build(
        config: &SwarmConfig,
        rec: &Recorder,
        sending: Duration,
        verdict: &CheckResult,
        subscriptions_checked: usize,
    ) -> Self {
        let snap = rec.snapshot();
        let lag = Percentiles::of(&snap.lag);
        let commands = snap.commands.len();
        let secs = sending.as_secs_f64().max(1e-9);
        Self {
            mode: if config.rate.is_some() {
                "open"
            } else {
                "closed"
            },
            bots: config.bots,
            spectators: config.spectators,
            rate: config.rate,
            duration_s: secs,
            commands,
            commands_per_s: commands as f64 / secs,
            latency_us: Percentiles::of(&snap.commands),
            guild_latency_us: Percentiles::of(&snap.guild),
            queries: snap.queries.len(),
            query_latency_us: Percentiles::of(&snap.queries),
            errors: snap.errors,
            delivery_lag_us: Lag {
                count: lag.count,
                p50: lag.p50,
                p90: lag.p90,
                p99: lag.p99,
                max: lag.max,
            },
            updates_received: snap.lag.len(),
            connections: rec
                .counters
                .peak_connected
                .load(std::sync::atomic::Ordering::Relaxed),
            connect_failures: rec
                .counters
                .connect_failures
                .load(std::sync::atomic::Ordering::Relaxed),
            resources_checked: verdict.resources_checked,
            subscriptions_checked,
            amounts_unchecked: verdict.amounts_unchecked,
            unknown_outcomes_applied: verdict.unknown_applied,
            unknown_outcomes_not_applied: verdict.unknown_not_applied,
            invariant_violations: verdict.violations.len(),
            violations: verdict
                .violations
                .iter()
                .take(LISTED_VIOLATIONS)
                .map(|v| v.to_string())
                .collect(),
            timeline: snap.timeline,
            plot: None,
            server: None,
            latency_histogram: Some(snap.commands),
        }
    }

    /// Whether the run passed its invariant check.
    pub fn ok(&self) -> bool {
        self.invariant_violations == 0
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("the report serialises")
    }

    /// The report for a person: the load, the latencies, the errors, the check.
    pub fn to_text(&self) -> String {
        let mut s = String::new();
        self.write_load(&mut s);
        self.write_latencies(&mut s);
        self.write_errors(&mut s);
        self.write_verdict(&mut s);
        s
    }

    /// What ran: mode, connections, commands and queries.
    fn write_load(&self, s: &mut String) {
        let mode = match self.rate {
            Some(r) => format!("open-loop at {r} commands/s"),
            None => "closed-loop".into(),
        };
        let _ = writeln!(
            s,
            "swarm: {} bots, {} spectators, {mode}, {:.1} s",
            self.bots, self.spectators, self.duration_s
        );
        let _ = writeln!(
            s,
            "connections held (peak): {}   failed connects: {}",
            self.connections, self.connect_failures
        );
        let _ = writeln!(
            s,
            "commands: {} ({:.0}/s)   queries: {}",
            self.commands, self.commands_per_s, self.queries
        );
    }

    /// Command, guild, query latency and update delivery lag, in milliseconds.
    fn write_latencies(&self, s: &mut String) {
        let ms = |us: u64| us as f64 / 1000.0;
        let l = &self.latency_us;
        let _ = writeln!(
            s,
            "command latency ms: p50 {:.2}  p90 {:.2}  p99 {:.2}  p99.9 {:.2}  max {:.2}",
            ms(l.p50),
            ms(l.p90),
            ms(l.p99),
            ms(l.p999),
            ms(l.max)
        );
        let g = &self.guild_latency_us;
        if g.count > 0 {
            let _ = writeln!(
                s,
                "  of which on guild resources ({}): p50 {:.2}  p99 {:.2}  max {:.2}",
                g.count,
                ms(g.p50),
                ms(g.p99),
                ms(g.max)
            );
        }
        let q = &self.query_latency_us;
        let _ = writeln!(
            s,
            "query latency ms:   p50 {:.2}  p99 {:.2}  max {:.2}",
            ms(q.p50),
            ms(q.p99),
            ms(q.max)
        );
        let d = &self.delivery_lag_us;
        let _ = writeln!(
            s,
            "update delivery lag ms (commit -> spectator): p50 {:.1}  p90 {:.1}  p99 {:.1}  max {:.1}  ({} updates)",
            ms(d.p50),
            ms(d.p90),
            ms(d.p99),
            ms(d.max),
            d.count
        );
    }

    /// Error replies and client-side failures, by code.
    fn write_errors(&self, s: &mut String) {
        if self.errors.is_empty() {
            let _ = writeln!(s, "errors: none");
        } else {
            let list: Vec<String> = self
                .errors
                .iter()
                .map(|(code, n)| format!("{code} {n}"))
                .collect();
            let _ = writeln!(
                s,
                "errors: {}  (`locked` is expected: bots try to spend while they hold a lock)",
                list.join(", ")
            );
        }
    }

    /// What the check covered, the server's own figures, and the verdict with its violations.
    fn write_verdict(&self, s: &mut String) {
        let _ = writeln!(
            s,
            "invariants: {} resources and {} subscriptions checked, {} amounts unchecked \
             (regenerating), unknown outcomes resolved by history: {} applied / {} not",
            self.resources_checked,
            self.subscriptions_checked,
            self.amounts_unchecked,
            self.unknown_outcomes_applied,
            self.unknown_outcomes_not_applied
        );
        if let Some(f) = &self.server {
            let per_commit = f
                .appends_per_commit
                .map_or_else(|| "-".to_string(), |a| format!("{a:.1}"));
            let _ = writeln!(
                s,
                "server: {:.1} CPU s ({:.0}% of a core), RSS {:.1} MiB, {} commands counted, \
                 {} group commits, {per_commit} appends per commit",
                f.cpu_seconds,
                f.cpu_percent_of_core,
                f.rss_bytes as f64 / (1024.0 * 1024.0),
                f.commands,
                f.group_commits,
            );
        }
        if self.ok() {
            let _ = writeln!(s, "invariant check: PASSED");
        } else {
            let _ = writeln!(
                s,
                "invariant check: FAILED with {} violations",
                self.invariant_violations
            );
            for v in &self.violations {
                let _ = writeln!(s, "  - {v}");
            }
        }
    }
}
