//! The embedded store's group-commit and memory instruments: process-wide (the store is below any
//! node), recorded through [`timed_group_commit`] and [`record_engine_memory`] and exposed by
//! every node's registry.

use super::{BATCH_BUCKETS, LATENCY_BUCKETS};
use prometheus::{Histogram, HistogramOpts, IntCounter, IntGauge};
use std::sync::LazyLock;
use std::time::{Duration, Instant};

/// The process-wide group-commit instruments of the embedded store.
pub(super) struct StoreInstruments {
    pub(super) group_commits: IntCounter,
    pub(super) appends_per_commit: Histogram,
    pub(super) commit_write_seconds: Histogram,
    pub(super) write_buffer_bytes: IntGauge,
    pub(super) block_cache_bytes: IntGauge,
}

pub(super) static STORE: LazyLock<StoreInstruments> = LazyLock::new(|| StoreInstruments {
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
    write_buffer_bytes: IntGauge::new(
        "warden_store_write_buffer_bytes",
        "Unflushed memtable bytes of the embedded store, as fjall counts them, at the last commit.",
    )
    .expect("valid metric"),
    block_cache_bytes: IntGauge::new(
        "warden_store_block_cache_bytes",
        "Block cache bytes of the embedded store (at most half of --cache-mb) at the last commit.",
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

/// Records what the embedded engine holds in memory now: its memtables and its block cache.
pub fn record_engine_memory(write_buffer: u64, block_cache: u64) {
    let store = &*STORE;
    store.write_buffer_bytes.set(write_buffer as i64);
    store.block_cache_bytes.set(block_cache as i64);
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
