//! Registration: every instrument of a node created and registered once, at start, in the
//! node's own Prometheus registry (so two nodes in one process count apart).

use super::store::STORE;
use super::{LATENCY_BUCKETS, close_labels, command_outcomes};
use crate::domain::CommandKind;
use prometheus::{Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry};
use strum::VariantArray;
use warden_protocol::{ClientMessage, ServerMessage};

/// Every instrument, registered once.
pub(super) struct Instruments {
    pub(super) registry: Registry,
    pub(super) connections_open: IntGauge,
    pub(super) connections_opened: IntCounter,
    pub(super) connections_refused: IntCounter,
    /// By close code: `client`, then in the order of [`warden_protocol::CloseCode`].
    pub(super) connections_closed: Vec<IntCounter>,
    /// By client message type, in the order of [`ClientMessage::TYPES`].
    pub(super) received: Vec<IntCounter>,
    /// By server message type, in the order of [`ServerMessage::TYPES`].
    pub(super) sent: Vec<IntCounter>,
    pub(super) malformed: IntCounter,
    pub(super) rate_limited: IntCounter,
    /// `[kind][outcome]`, in the order of [`CommandKind`](crate::domain::CommandKind) × [`command_outcomes`].
    pub(super) commands: Vec<Vec<IntCounter>>,
    /// Receive → reply, by kind.
    pub(super) command_seconds: Vec<Histogram>,
    pub(super) commit_seconds: Histogram,
    pub(super) actors_live: IntGauge,
    pub(super) passivations: IntCounter,
    pub(super) mailbox_full: IntCounter,
    pub(super) conflicts: IntCounter,
    pub(super) retries: IntCounter,
    pub(super) subscriptions_open: IntGauge,
    pub(super) gap_fills: IntCounter,
    pub(super) store_disk_bytes: IntGauge,
    pub(super) store_disk_free_bytes: IntGauge,
    pub(super) store_disk_free_floor_bytes: IntGauge,
    /// MongoDB operations by kind, brought up to the store's own counts at each scrape.
    pub(super) store_round_trips: IntCounterVec,
    pub(super) relay_streaming: IntGauge,
    /// CPU seconds of the process to the clock tick; brought up to date at each scrape.
    pub(super) cpu_seconds: prometheus::Counter,
    /// Units added and spent, by resource type (`resource_type`, `flow`); handles resolved once
    /// per type by [`Metrics::economy_types`](super::Metrics::economy_types).
    pub(super) amounts: IntCounterVec,
    /// `[added, spent]` per catalogue type, and for every other type together (`other`).
    pub(super) economy: std::sync::OnceLock<super::Economy>,
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
    // Longer than most functions on purpose: one entry per instrument, its name and help
    // side by side, read as a table (docs/operations.md lists the same names).
    pub(super) fn new() -> Self {
        let r = Registry::new();
        register_process_wide(&r);
        let close_labels = close_labels();
        let close_codes: Vec<&str> = close_labels.iter().map(String::as_str).collect();
        let (commands, command_seconds) = command_instruments(&r);
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
                ClientMessage::TYPES,
            ),
            sent: counters_by(
                &r,
                "warden_messages_sent_total",
                "Server messages queued for clients, by type (`update`: subscription updates).",
                "type",
                ServerMessage::TYPES,
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
            amounts: {
                let vec = IntCounterVec::new(
                    Opts::new(
                        "warden_amount_total",
                        "Units of resources added (`flow=added`: add commands) and spent (`flow=spent`: allocate commands) by committed commands of this node, by resource type (catalogue types by name, others as `other`).",
                    ),
                    &["resource_type", "flow"],
                )
                .expect("valid metric");
                r.register(Box::new(vec.clone())).expect("registered once");
                vec
            },
            economy: Default::default(),
            store_round_trips: {
                let vec = IntCounterVec::new(
                    Opts::new(
                        "warden_store_round_trips_total",
                        "Operations (network round trips) this node sent to MongoDB, by kind.",
                    ),
                    &["op"],
                )
                .expect("valid metric");
                r.register(Box::new(vec.clone())).expect("registered once");
                vec
            },
            store_disk_bytes: gauge(
                &r,
                "warden_store_disk_bytes",
                "Bytes under the embedded store's data directory (0 on MongoDB).",
            ),
            store_disk_free_bytes: gauge(
                &r,
                "warden_store_disk_free_bytes",
                "Bytes free on the file system of the embedded store's data directory (0 on MongoDB).",
            ),
            store_disk_free_floor_bytes: gauge(
                &r,
                "warden_store_disk_free_floor_bytes",
                "The embedded store's free-space floor (--min-free-mb): below it commands are refused with storage_full (0 on MongoDB, or when off).",
            ),
            relay_streaming: gauge(
                &r,
                "warden_relay_streaming",
                "On MongoDB: 1 while the relay follows a change stream, 0 while it polls.",
            ),
            cpu_seconds: {
                let c = prometheus::Counter::new(
                    "warden_process_cpu_seconds_total",
                    "CPU seconds (user + system) of the process, to the clock tick (process_cpu_seconds_total counts whole seconds).",
                )
                .expect("valid metric");
                r.register(Box::new(c.clone())).expect("registered once");
                c
            },
            registry: r,
        }
    }
}

/// Registers what every node's registry shows of the whole process: the build, the embedded
/// store's group commit, and the process collector.
fn register_process_wide(r: &Registry) {
    // A gauge (always 1), as Prometheus' `*_info` convention has it: a counter would read as a
    // rate of zero and vanish from `rate()`-based queries.
    let info = prometheus::IntGaugeVec::new(
        Opts::new("warden_build_info", "The running version (always 1)."),
        &["version"],
    )
    .expect("valid metric");
    r.register(Box::new(info.clone())).expect("registered once");
    info.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);

    let store = &*STORE;
    for c in [
        Box::new(store.group_commits.clone()) as Box<dyn prometheus::core::Collector>,
        Box::new(store.appends_per_commit.clone()),
        Box::new(store.commit_write_seconds.clone()),
        Box::new(store.write_buffer_bytes.clone()),
        Box::new(store.block_cache_bytes.clone()),
    ] {
        r.register(c).expect("registered once");
    }
    #[cfg(target_os = "linux")]
    r.register(Box::new(
        prometheus::process_collector::ProcessCollector::for_self(),
    ))
    .expect("registered once");
}

/// The commands table (`[kind][outcome]`) and the command latency by kind.
fn command_instruments(r: &Registry) -> (Vec<Vec<IntCounter>>, Vec<Histogram>) {
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
    let outcomes = command_outcomes();
    let kinds: Vec<&'static str> = CommandKind::VARIANTS.iter().map(|k| k.into()).collect();
    let commands = kinds
        .iter()
        .map(|k| {
            outcomes
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
    let command_seconds = kinds
        .iter()
        .map(|k| seconds_vec.with_label_values(&[*k]))
        .collect();
    (commands, command_seconds)
}

/// CPU seconds (user + system) the process has used, to the clock tick; `None` where unknown.
#[cfg(target_os = "linux")]
pub(super) fn process_cpu_seconds() -> Option<f64> {
    let stat = procfs::process::Process::myself().ok()?.stat().ok()?;
    let ticks = procfs::ticks_per_second().max(1);
    Some((stat.utime + stat.stime) as f64 / ticks as f64)
}

#[cfg(not(target_os = "linux"))]
pub(super) fn process_cpu_seconds() -> Option<f64> {
    None
}
