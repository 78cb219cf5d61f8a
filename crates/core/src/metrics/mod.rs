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
//!
//! - this file: the labels, and [`Metrics`], whose methods are named after what happened;
//! - `instruments`: creating and registering every instrument of a node;
//! - `store`: the process-wide group-commit instruments.

mod instruments;
mod store;

pub use store::{record_engine_memory, record_group_commit, timed_group_commit};

use crate::domain::CommandKind;
use instruments::{Instruments, process_cpu_seconds};
use prometheus::TextEncoder;
use std::sync::Arc;
use std::time::{Duration, Instant};
use strum::VariantArray;
use warden_protocol::{ClientMessage, CloseCode, ErrorCode, ServerMessage, ServerMessageType};

/// The `outcome` labels of the `commands` table: applied, duplicate, then every error code of
/// the protocol, in [`ErrorCode`]'s order.
fn command_outcomes() -> Vec<&'static str> {
    let mut outcomes = vec!["applied", "duplicate"];
    outcomes.extend(ErrorCode::VARIANTS.iter().map(|c| c.as_str()));
    outcomes
}

/// The `code` labels of closed sessions: `client` when the client closed or the connection
/// broke, then each of the protocol's close codes by number, in [`CloseCode`]'s order.
fn close_labels() -> Vec<String> {
    std::iter::once("client".to_owned())
        .chain(CloseCode::VARIANTS.iter().map(|c| c.code().to_string()))
        .collect()
}

/// Latency buckets in seconds: 100 µs to 10 s.
const LATENCY_BUCKETS: [f64; 16] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

/// Appends per group commit: powers of two up to the largest batch.
const BATCH_BUCKETS: [f64; 12] = [
    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 2048.0,
];

/// The economy counters' handles: `[added, spent]` for each catalogue type, and for the rest.
pub(crate) struct Economy {
    by_type: std::collections::HashMap<Box<str>, [prometheus::IntCounter; 2]>,
    other: [prometheus::IntCounter; 2],
}

/// The node's metrics, or nothing when off. Cheap to clone.
#[derive(Clone)]
pub struct Metrics(Option<Arc<Instruments>>);

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Metrics")
            .field(&if self.0.is_some() { "on" } else { "off" })
            .finish()
    }
}

/// What the scrape reads from the node at scrape time (gauges nobody updates on the hot path).
#[derive(Clone, Debug, Default)]
pub struct ScrapeGauges {
    pub actors_live: usize,
    /// Bytes under the embedded store's data directory; `None` on MongoDB.
    pub store_disk_bytes: Option<u64>,
    /// Bytes free on the data directory's file system; `None` on MongoDB.
    pub store_disk_free_bytes: Option<u64>,
    /// The embedded store's free-space floor (`--min-free-mb`); `None` on MongoDB.
    pub store_disk_free_floor_bytes: Option<u64>,
    /// On MongoDB: whether the relay follows a change stream (`Some(false)`: it polls).
    pub relay_streaming: Option<bool>,
    /// On MongoDB: operations sent since the store opened, by kind (empty on the embedded store).
    pub store_round_trips: Vec<(&'static str, u64)>,
}

/// Index of a refusal code in the `outcome` labels ([`command_outcomes`]).
fn outcome_index(code: ErrorCode) -> usize {
    2 + ErrorCode::VARIANTS
        .iter()
        .position(|c| *c == code)
        .expect("every error code is a variant")
}

/// How a command ended, as the metrics count it.
#[derive(Clone, Copy, Debug)]
pub enum Outcome {
    Applied,
    Duplicate,
    /// Refused with this code.
    Refused(ErrorCode),
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

    /// Gives the economy counters a label per type of `types` (the catalogue's); every other type
    /// (a service's custom one) counts as `other`, so the label set stays bounded. Set once, when
    /// the node starts (a later call, from another node on the same metrics, changes nothing).
    pub fn economy_types<'a>(&self, types: impl IntoIterator<Item = &'a str>) {
        let Some(m) = &self.0 else {
            return;
        };
        let pair = |t: &str| {
            [
                m.amounts.with_label_values(&[t, "added"]),
                m.amounts.with_label_values(&[t, "spent"]),
            ]
        };
        let _ = m.economy.set(Economy {
            by_type: types.into_iter().map(|t| (t.into(), pair(t))).collect(),
            other: pair("other"),
        });
    }

    /// A committed command of this node added `added` and spent `spent` units of a resource of
    /// type `resource_type`.
    pub fn amounts(&self, resource_type: &str, added: u64, spent: u64) {
        let Some(m) = &self.0 else {
            return;
        };
        if added == 0 && spent == 0 {
            return;
        }
        if let Some(economy) = m.economy.get() {
            let [a, s] = economy.by_type.get(resource_type).unwrap_or(&economy.other);
            a.inc_by(added);
            s.inc_by(spent);
        }
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
        let bytes = |b: Option<u64>| b.map_or(0, |b| i64::try_from(b).unwrap_or(i64::MAX));
        m.store_disk_free_bytes
            .set(bytes(gauges.store_disk_free_bytes));
        m.store_disk_free_floor_bytes
            .set(bytes(gauges.store_disk_free_floor_bytes));
        m.relay_streaming
            .set(i64::from(gauges.relay_streaming.unwrap_or(false)));
        for (op, total) in &gauges.store_round_trips {
            // The store's counts only go up: add what was sent since the last scrape.
            let counter = m.store_round_trips.with_label_values(&[*op]);
            let delta = total.saturating_sub(counter.get());
            if delta > 0 {
                counter.inc_by(delta);
            }
        }
        if let Some(cpu) = process_cpu_seconds() {
            // A counter only goes up: add what was used since the last scrape.
            let delta = cpu - m.cpu_seconds.get();
            if delta > 0.0 {
                m.cpu_seconds.inc_by(delta);
            }
        }
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
    pub fn connection_closed(&self, code: Option<CloseCode>) {
        if let Some(m) = &self.0 {
            m.connections_open.dec();
            let i = code.map_or(0, |code| {
                1 + CloseCode::VARIANTS
                    .iter()
                    .position(|c| *c == code)
                    .expect("every close code is a variant")
            });
            m.connections_closed[i].inc();
        }
    }

    pub fn received(&self, msg: &ClientMessage) {
        if let Some(m) = &self.0 {
            m.received[msg.type_index()].inc();
        }
    }

    pub fn sent(&self, msg: &ServerMessage) {
        if let Some(m) = &self.0 {
            m.sent[msg.type_index()].inc();
        }
    }

    /// A subscription update was queued for a client.
    pub fn update_sent(&self) {
        if let Some(m) = &self.0 {
            m.sent[ServerMessageType::Update as usize].inc();
        }
    }

    /// An error message not built from a [`ServerMessage`] here was queued.
    pub fn error_sent(&self) {
        if let Some(m) = &self.0 {
            m.sent[ServerMessageType::Error as usize].inc();
        }
    }

    pub fn malformed(&self) {
        if let Some(m) = &self.0 {
            m.malformed.inc();
        }
    }

    /// A command of kind `kind` was refused before reaching an actor (rate limit, spectator).
    pub fn command_refused_early(&self, kind: CommandKind, code: ErrorCode) {
        if let Some(m) = &self.0 {
            if code == ErrorCode::RateLimited {
                m.rate_limited.inc();
            }
            m.commands[kind as usize][outcome_index(code)].inc();
        }
    }

    /// A command that reached the actors was answered `outcome`, `received` after its receipt.
    pub fn command(&self, kind: CommandKind, outcome: Outcome, received: Instant) {
        let Some(m) = &self.0 else {
            return;
        };
        let kind = kind as usize;
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
#[derive(Debug)]
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
        metrics.connection_closed(Some(CloseCode::SlowConsumer));
        metrics.connection_closed(None);
        let text = metrics.render(ScrapeGauges::default());
        assert!(text.contains("# HELP warden_commands_total "));
        assert!(text.contains("# TYPE warden_build_info gauge"));
        assert!(text.contains("warden_connections_closed_total{code=\"4008\"} 1"));
        assert!(text.contains("warden_connections_closed_total{code=\"client\"} 1"));
        assert!(text.contains("warden_connections_closed_total{code=\"1001\"} 0"));
        // Two nodes in one process each have their own registry.
        let other = Metrics::new();
        assert!(
            other
                .render(ScrapeGauges::default())
                .contains("warden_connections_closed_total{code=\"4008\"} 0")
        );
    }

    #[test]
    fn amounts_count_per_catalogue_type_and_every_other_type_as_other() {
        let metrics = Metrics::new();
        metrics.economy_types(["gold", "wood"]);
        metrics.amounts("gold", 5, 0);
        metrics.amounts("gold", 0, 2);
        metrics.amounts("guild-gold", 0, 3);
        metrics.amounts("player-made-7", 1, 0);
        let text = metrics.render(ScrapeGauges::default());
        for line in [
            r#"warden_amount_total{flow="added",resource_type="gold"} 5"#,
            r#"warden_amount_total{flow="spent",resource_type="gold"} 2"#,
            r#"warden_amount_total{flow="added",resource_type="wood"} 0"#,
            r#"warden_amount_total{flow="spent",resource_type="other"} 3"#,
            r#"warden_amount_total{flow="added",resource_type="other"} 1"#,
        ] {
            assert!(text.contains(line), "{line} in\n{text}");
        }
        assert!(
            !text.contains("guild-gold"),
            "custom types never become labels"
        );
    }

    #[test]
    fn off_records_nothing_and_renders_nothing() {
        let metrics = Metrics::off();
        metrics.connection_opened();
        metrics.command(CommandKind::Create, Outcome::Applied, Instant::now());
        assert_eq!(metrics.render(ScrapeGauges::default()), "");
    }
}
