//! The node's Prometheus metrics: every instrument registered once, at start, into the node's own
//! registry, and recorded on the hot path through pre-built handles (an atomic add; no label
//! lookup or hashing per command). `docs/operations.md` lists each metric with what healthy
//! looks like and which alert to set.
//!
//! [`Metrics`] is cheap to clone and may be off ([`Metrics::off`], what `--admin-listen off`
//! gives): then every recording method returns at once and nothing is registered.
//!
//! The embedded store's group commit is process-wide, below any node: it records through
//! [`timed_group_commit`] into statics that every node's registry also exposes.

use crate::domain::Command;
use crate::protocol::{ClientMessage, ServerMessage};
use prometheus::{
    Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry, TextEncoder,
};
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

/// Command kinds a client can send, in the order of the `commands` table.
pub const COMMAND_KINDS: [&str; 5] = ["create", "allocate", "add", "lock", "unlock"];

/// Outcomes of a command: applied, duplicate, then every refusal code a client can get
/// (docs/protocol.md), then `other` for a code added later and not listed here yet.
pub const COMMAND_OUTCOMES: [&str; 23] = [
    "applied",
    "duplicate",
    "invalid_amount",
    "overflow",
    "locked",
    "insufficient",
    "exceeds_max",
    "already_locked",
    "not_locked",
    "not_lock_holder",
    "not_found",
    "forbidden",
    "unknown_resource_type",
    "invalid_params",
    "invalid_duration",
    "reason_too_long",
    "already_exists",
    "command_id_reused",
    "conflict",
    "unavailable",
    "shutting_down",
    "rate_limited",
    "other",
];

/// Client message types, in the order of [`received_index`].
const RECEIVED_TYPES: [&str; 12] = [
    "create",
    "allocate",
    "add",
    "lock",
    "unlock",
    "get",
    "list",
    "history",
    "subscribe",
    "unsubscribe",
    "ping",
    "state_at",
];

/// Server message types, in the order of [`sent_index`].
const SENT_TYPES: [&str; 11] = [
    "welcome",
    "applied",
    "resource",
    "resources",
    "history",
    "subscribed",
    "unsubscribed",
    "update",
    "pong",
    "error",
    "state",
];
const SENT_UPDATE: usize = 7;
const SENT_ERROR: usize = 9;

/// Close codes a session can end with (docs/protocol.md); `client` when the client closed or the
/// connection broke, `other` for anything else.
const CLOSE_CODES: [&str; 9] = [
    "client", "1001", "1002", "1003", "1008", "1009", "1011", "4001", "4008",
];
const CLOSE_OTHER: &str = "other";

/// Latency buckets in seconds: 100 µs to 10 s.
const LATENCY_BUCKETS: [f64; 16] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

/// Appends per group commit: powers of two up to the largest batch.
const BATCH_BUCKETS: [f64; 12] = [
    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 2048.0,
];

/// The node's metrics, or nothing when off. Cheap to clone.
#[derive(Clone)]
pub struct Metrics(Option<Arc<Instruments>>);

/// Every instrument, registered once.
struct Instruments {
    registry: Registry,
    connections_open: IntGauge,
    connections_opened: IntCounter,
    connections_refused: IntCounter,
    /// By close code, in the order of [`CLOSE_CODES`], then `other`.
    connections_closed: Vec<IntCounter>,
    /// By client message type, in the order of [`RECEIVED_TYPES`].
    received: Vec<IntCounter>,
    /// By server message type, in the order of [`SENT_TYPES`].
    sent: Vec<IntCounter>,
    malformed: IntCounter,
    rate_limited: IntCounter,
    /// `[kind][outcome]`, in the order of [`COMMAND_KINDS`] × [`COMMAND_OUTCOMES`].
    commands: Vec<Vec<IntCounter>>,
    /// Receive → reply, by kind.
    command_seconds: Vec<Histogram>,
    commit_seconds: Histogram,
    actors_live: IntGauge,
    passivations: IntCounter,
    mailbox_full: IntCounter,
    conflicts: IntCounter,
    retries: IntCounter,
    subscriptions_open: IntGauge,
    gap_fills: IntCounter,
    store_disk_bytes: IntGauge,
    relay_streaming: IntGauge,
}

/// What the scrape reads from the node at scrape time (gauges nobody updates on the hot path).
#[derive(Clone, Copy, Debug, Default)]
pub struct ScrapeGauges {
    pub actors_live: usize,
    /// Bytes under the embedded store's data directory; `None` on MongoDB.
    pub store_disk_bytes: Option<u64>,
    /// On MongoDB: whether the relay follows a change stream (`Some(false)`: it polls).
    pub relay_streaming: Option<bool>,
}

/// The process-wide group-commit instruments of the embedded store.
struct StoreInstruments {
    group_commits: IntCounter,
    appends_per_commit: Histogram,
    commit_write_seconds: Histogram,
}

static STORE: LazyLock<StoreInstruments> = LazyLock::new(|| StoreInstruments {
    group_commits: IntCounter::new(
        "warden_store_group_commits_total",
        "Write transactions (group commits) of the embedded store.",
    )
    .expect("valid metric"),
    appends_per_commit: Histogram::with_opts(
        HistogramOpts::new(
            "warden_store_appends_per_commit",
            "Appends (commands) written per group commit of the embedded store.",
        )
        .buckets(BATCH_BUCKETS.to_vec()),
    )
    .expect("valid metric"),
    commit_write_seconds: Histogram::with_opts(
        HistogramOpts::new(
            "warden_store_group_commit_seconds",
            "Time to write and fsync one group commit of the embedded store.",
        )
        .buckets(LATENCY_BUCKETS.to_vec()),
    )
    .expect("valid metric"),
});

/// Records one group commit of the embedded store: `appends` commands written and made durable
/// in `write` (the transaction and its fsync).
pub fn record_group_commit(appends: usize, write: Duration) {
    let store = &*STORE;
    store.group_commits.inc();
    store.appends_per_commit.observe(appends as f64);
    store.commit_write_seconds.observe(write.as_secs_f64());
}

/// Runs one group commit's write and records it ([`record_group_commit`]) if it succeeded.
pub fn timed_group_commit<T, E>(
    appends: usize,
    write: impl FnOnce() -> Result<T, E>,
) -> Result<T, E> {
    let started = Instant::now();
    let outcome = write();
    if outcome.is_ok() {
        record_group_commit(appends, started.elapsed());
    }
    outcome
}

fn counter(registry: &Registry, name: &str, help: &str) -> IntCounter {
    let c = IntCounter::new(name, help).expect("valid metric");
    registry
        .register(Box::new(c.clone()))
        .expect("registered once");
    c
}

fn gauge(registry: &Registry, name: &str, help: &str) -> IntGauge {
    let g = IntGauge::new(name, help).expect("valid metric");
    registry
        .register(Box::new(g.clone()))
        .expect("registered once");
    g
}

/// One counter per label value, in the order given.
fn counters_by(
    registry: &Registry,
    name: &str,
    help: &str,
    label: &str,
    values: &[&str],
) -> Vec<IntCounter> {
    let vec = IntCounterVec::new(Opts::new(name, help), &[label]).expect("valid metric");
    registry
        .register(Box::new(vec.clone()))
        .expect("registered once");
    values
        .iter()
        .map(|v| vec.with_label_values(&[*v]))
        .collect()
}

fn latency(registry: &Registry, name: &str, help: &str) -> Histogram {
    let h = Histogram::with_opts(HistogramOpts::new(name, help).buckets(LATENCY_BUCKETS.to_vec()))
        .expect("valid metric");
    registry
        .register(Box::new(h.clone()))
        .expect("registered once");
    h
}

impl Instruments {
    fn new() -> Self {
        let r = Registry::new();
        let info = IntCounterVec::new(
            Opts::new("warden_build_info", "The running version (always 1)."),
            &["version"],
        )
        .expect("valid metric");
        r.register(Box::new(info.clone())).expect("registered once");
        info.with_label_values(&[env!("CARGO_PKG_VERSION")]).inc();

        let store = &*STORE;
        for c in [
            Box::new(store.group_commits.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(store.appends_per_commit.clone()),
            Box::new(store.commit_write_seconds.clone()),
        ] {
            r.register(c).expect("registered once");
        }
        #[cfg(target_os = "linux")]
        r.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ))
        .expect("registered once");

        let mut close_codes = CLOSE_CODES.to_vec();
        close_codes.push(CLOSE_OTHER);
        let commands_vec = IntCounterVec::new(
            Opts::new(
                "warden_commands_total",
                "Commands answered, by kind and outcome (applied, duplicate, or the refusal code).",
            ),
            &["kind", "outcome"],
        )
        .expect("valid metric");
        r.register(Box::new(commands_vec.clone()))
            .expect("registered once");
        let commands = COMMAND_KINDS
            .iter()
            .map(|k| {
                COMMAND_OUTCOMES
                    .iter()
                    .map(|o| commands_vec.with_label_values(&[*k, *o]))
                    .collect()
            })
            .collect();
        let seconds_vec = prometheus::HistogramVec::new(
            HistogramOpts::new(
                "warden_command_duration_seconds",
                "Commands that reached the actors, from receipt to reply, by kind.",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["kind"],
        )
        .expect("valid metric");
        r.register(Box::new(seconds_vec.clone()))
            .expect("registered once");
        let command_seconds = COMMAND_KINDS
            .iter()
            .map(|k| seconds_vec.with_label_values(&[*k]))
            .collect();

        Self {
            connections_open: gauge(
                &r,
                "warden_connections_open",
                "WebSocket sessions open now.",
            ),
            connections_opened: counter(
                &r,
                "warden_connections_opened_total",
                "WebSocket sessions opened (authenticated upgrades).",
            ),
            connections_refused: counter(
                &r,
                "warden_connections_refused_total",
                "Upgrades refused: bad or missing token, wrong path or subprotocol, handshake failure or timeout.",
            ),
            connections_closed: counters_by(
                &r,
                "warden_connections_closed_total",
                "WebSocket sessions closed, by close code (`client`: the client left or the connection broke).",
                "code",
                &close_codes,
            ),
            received: counters_by(
                &r,
                "warden_messages_received_total",
                "Well-formed client messages, by type.",
                "type",
                &RECEIVED_TYPES,
            ),
            sent: counters_by(
                &r,
                "warden_messages_sent_total",
                "Server messages queued for clients, by type (`update`: subscription updates).",
                "type",
                &SENT_TYPES,
            ),
            malformed: counter(
                &r,
                "warden_malformed_messages_total",
                "Client messages that could not be decoded (answered bad_message or unknown_type).",
            ),
            rate_limited: counter(
                &r,
                "warden_rate_limited_total",
                "Commands refused with rate_limited (over the per-session rate).",
            ),
            commands,
            command_seconds,
            commit_seconds: latency(
                &r,
                "warden_commit_duration_seconds",
                "One actor's append to the store, from the call to durable (a batch of its commands).",
            ),
            actors_live: gauge(&r, "warden_actors_live", "Resource actors in memory now."),
            passivations: counter(
                &r,
                "warden_actor_passivations_total",
                "Actors stopped after being idle (their memory freed).",
            ),
            mailbox_full: counter(
                &r,
                "warden_actor_mailbox_full_total",
                "Commands that waited because their resource's mailbox was full (back-pressure).",
            ),
            conflicts: counter(
                &r,
                "warden_append_conflicts_total",
                "Appends refused for a version conflict (another writer got there first).",
            ),
            retries: counter(
                &r,
                "warden_command_retries_total",
                "Times an actor decided commands again after a conflict or a store error.",
            ),
            subscriptions_open: gauge(&r, "warden_subscriptions_open", "Live subscriptions now."),
            gap_fills: counter(
                &r,
                "warden_subscription_gap_fills_total",
                "Times a subscription read the event log to fill a gap (resume or lag).",
            ),
            store_disk_bytes: gauge(
                &r,
                "warden_store_disk_bytes",
                "Bytes under the embedded store's data directory (0 on MongoDB).",
            ),
            relay_streaming: gauge(
                &r,
                "warden_relay_streaming",
                "On MongoDB: 1 while the relay follows a change stream, 0 while it polls.",
            ),
            registry: r,
        }
    }
}

/// Index of a command kind in [`COMMAND_KINDS`]; `None` for the internal lock expiry.
pub fn command_kind(command: &Command) -> Option<usize> {
    match command {
        Command::Create(_) => Some(0),
        Command::Allocate(_) => Some(1),
        Command::Add(_) => Some(2),
        Command::Lock(_) => Some(3),
        Command::Unlock(_) => Some(4),
        Command::ExpireLock(_) => None,
    }
}

/// Index of a refusal code in [`COMMAND_OUTCOMES`] (`other` if it is not listed).
fn outcome_index(code: &str) -> usize {
    COMMAND_OUTCOMES
        .iter()
        .position(|o| *o == code)
        .unwrap_or(COMMAND_OUTCOMES.len() - 1)
}

fn received_index(msg: &ClientMessage) -> usize {
    match msg {
        ClientMessage::Create { .. } => 0,
        ClientMessage::Allocate { .. } => 1,
        ClientMessage::Add { .. } => 2,
        ClientMessage::Lock { .. } => 3,
        ClientMessage::Unlock { .. } => 4,
        ClientMessage::Get { .. } => 5,
        ClientMessage::List { .. } => 6,
        ClientMessage::History { .. } => 7,
        ClientMessage::Subscribe { .. } => 8,
        ClientMessage::Unsubscribe { .. } => 9,
        ClientMessage::Ping { .. } => 10,
        ClientMessage::StateAt { .. } => 11,
    }
}

fn sent_index(msg: &ServerMessage) -> usize {
    match msg {
        ServerMessage::Welcome { .. } => 0,
        ServerMessage::Applied { .. } => 1,
        ServerMessage::Resource { .. } => 2,
        ServerMessage::Resources { .. } => 3,
        ServerMessage::History { .. } => 4,
        ServerMessage::Subscribed { .. } => 5,
        ServerMessage::Unsubscribed { .. } => 6,
        ServerMessage::Update { .. } => SENT_UPDATE,
        ServerMessage::Pong { .. } => 8,
        ServerMessage::Error { .. } => SENT_ERROR,
        ServerMessage::State { .. } => 10,
    }
}

/// How a command ended, as the metrics count it.
#[derive(Clone, Copy, Debug)]
pub enum Outcome<'a> {
    Applied,
    Duplicate,
    /// Refused with this code.
    Refused(&'a str),
}

impl Metrics {
    /// Metrics on, in a registry of their own.
    pub fn new() -> Self {
        Self(Some(Arc::new(Instruments::new())))
    }

    /// No metrics: every recording method does nothing.
    pub fn off() -> Self {
        Self(None)
    }

    pub fn is_on(&self) -> bool {
        self.0.is_some()
    }

    /// The Prometheus text exposition of every metric, after setting the scrape-time gauges.
    /// Empty when off.
    pub fn render(&self, gauges: ScrapeGauges) -> String {
        let Some(m) = &self.0 else {
            return String::new();
        };
        m.actors_live
            .set(i64::try_from(gauges.actors_live).unwrap_or(i64::MAX));
        m.store_disk_bytes.set(
            gauges
                .store_disk_bytes
                .map_or(0, |b| i64::try_from(b).unwrap_or(i64::MAX)),
        );
        m.relay_streaming
            .set(i64::from(gauges.relay_streaming.unwrap_or(false)));
        TextEncoder::new()
            .encode_to_string(&m.registry.gather())
            .unwrap_or_else(|e| format!("# cannot encode metrics: {e}\n"))
    }

    pub fn connection_opened(&self) {
        if let Some(m) = &self.0 {
            m.connections_opened.inc();
            m.connections_open.inc();
        }
    }

    pub fn connection_refused(&self) {
        if let Some(m) = &self.0 {
            m.connections_refused.inc();
        }
    }

    /// A session ended with `code` (`None`: the client left or the connection broke).
    pub fn connection_closed(&self, code: Option<u16>) {
        if let Some(m) = &self.0 {
            m.connections_open.dec();
            let i = match code {
                None => 0,
                Some(code) => {
                    let text = code.to_string();
                    CLOSE_CODES
                        .iter()
                        .position(|c| *c == text)
                        .unwrap_or(CLOSE_CODES.len())
                }
            };
            m.connections_closed[i].inc();
        }
    }

    pub fn received(&self, msg: &ClientMessage) {
        if let Some(m) = &self.0 {
            m.received[received_index(msg)].inc();
        }
    }

    pub fn sent(&self, msg: &ServerMessage) {
        if let Some(m) = &self.0 {
            m.sent[sent_index(msg)].inc();
        }
    }

    /// A subscription update was queued for a client.
    pub fn update_sent(&self) {
        if let Some(m) = &self.0 {
            m.sent[SENT_UPDATE].inc();
        }
    }

    /// An error message not built from a [`ServerMessage`] here was queued.
    pub fn error_sent(&self) {
        if let Some(m) = &self.0 {
            m.sent[SENT_ERROR].inc();
        }
    }

    pub fn malformed(&self) {
        if let Some(m) = &self.0 {
            m.malformed.inc();
        }
    }

    /// A command of kind `kind` ([`command_kind`]) was refused before reaching an actor
    /// (rate limit, spectator).
    pub fn command_refused_early(&self, kind: Option<usize>, code: &str) {
        if let Some(m) = &self.0 {
            if code == "rate_limited" {
                m.rate_limited.inc();
            }
            if let Some(kind) = kind {
                m.commands[kind][outcome_index(code)].inc();
            }
        }
    }

    /// A command that reached the actors was answered `outcome`, `received` after its receipt.
    pub fn command(&self, kind: Option<usize>, outcome: Outcome<'_>, received: Instant) {
        let (Some(m), Some(kind)) = (&self.0, kind) else {
            return;
        };
        let i = match outcome {
            Outcome::Applied => 0,
            Outcome::Duplicate => 1,
            Outcome::Refused(code) => outcome_index(code),
        };
        m.commands[kind][i].inc();
        m.command_seconds[kind].observe(received.elapsed().as_secs_f64());
    }

    /// An actor's append took `took` from the call to durable.
    pub fn commit(&self, took: Duration) {
        if let Some(m) = &self.0 {
            m.commit_seconds.observe(took.as_secs_f64());
        }
    }

    pub fn passivated(&self) {
        if let Some(m) = &self.0 {
            m.passivations.inc();
        }
    }

    pub fn mailbox_full(&self) {
        if let Some(m) = &self.0 {
            m.mailbox_full.inc();
        }
    }

    pub fn conflict(&self) {
        if let Some(m) = &self.0 {
            m.conflicts.inc();
        }
    }

    pub fn retry(&self) {
        if let Some(m) = &self.0 {
            m.retries.inc();
        }
    }

    /// A subscription started; the guard counts it until dropped.
    pub fn subscription_opened(&self) -> SubscriptionGuard {
        if let Some(m) = &self.0 {
            m.subscriptions_open.inc();
        }
        SubscriptionGuard(self.clone())
    }

    pub fn gap_fill(&self) {
        if let Some(m) = &self.0 {
            m.gap_fills.inc();
        }
    }
}

impl Default for Metrics {
    /// On, as [`Metrics::new`].
    fn default() -> Self {
        Self::new()
    }
}

/// Keeps one subscription counted in `warden_subscriptions_open` while it lives.
pub struct SubscriptionGuard(Metrics);

impl Drop for SubscriptionGuard {
    fn drop(&mut self) {
        if let Some(m) = &self.0.0 {
            m.subscriptions_open.dec();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_instrument_registers_once_and_renders_with_help() {
        let metrics = Metrics::new();
        metrics.connection_closed(Some(4008));
        metrics.connection_closed(Some(1234));
        let text = metrics.render(ScrapeGauges::default());
        assert!(text.contains("# HELP warden_commands_total "));
        assert!(text.contains("warden_connections_closed_total{code=\"4008\"} 1"));
        assert!(text.contains("warden_connections_closed_total{code=\"other\"} 1"));
        // Two nodes in one process each have their own registry.
        let other = Metrics::new();
        assert!(
            other
                .render(ScrapeGauges::default())
                .contains("warden_connections_closed_total{code=\"4008\"} 0")
        );
    }

    #[test]
    fn off_records_nothing_and_renders_nothing() {
        let metrics = Metrics::off();
        metrics.connection_opened();
        metrics.command(Some(0), Outcome::Applied, Instant::now());
        assert_eq!(metrics.render(ScrapeGauges::default()), "");
    }
}
