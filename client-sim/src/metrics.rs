//! Measurements of a swarm: latency histograms (overall and per second), delivery lag, counts and
//! errors by code; and the [`Percentiles`] the report shows.
//!
//! Bots and spectators record into one [`Recorder`] behind a mutex held only for a histogram
//! increment (never across `.await`); the live counters the progress bar reads are atomics.

use hdrhistogram::Histogram;
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Largest latency the histograms hold (longer ones are clamped): 10 minutes in µs.
const MAX_US: u64 = 600_000_000;

/// Latency percentiles in microseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Percentiles {
    pub count: u64,
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub p999: u64,
    pub max: u64,
    pub mean: f64,
}

impl Percentiles {
    pub fn of(h: &Histogram<u64>) -> Self {
        if h.is_empty() {
            return Self::default();
        }
        Self {
            count: h.len(),
            p50: h.value_at_quantile(0.50),
            p90: h.value_at_quantile(0.90),
            p99: h.value_at_quantile(0.99),
            p999: h.value_at_quantile(0.999),
            max: h.max(),
            mean: h.mean(),
        }
    }
}

/// One second of the run: how many commands finished and how long they took.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct SecondStats {
    /// Seconds since the start of the run.
    pub t: u64,
    pub commands: u64,
    pub p50_us: u64,
    pub p99_us: u64,
    pub max_us: u64,
}

fn histogram(sigfig: u8) -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_US, sigfig).expect("valid histogram bounds")
}

#[derive(Debug)]
struct Inner {
    commands: Histogram<u64>,
    /// Commands on the shared guild resources alone (contended: one actor serialises them).
    guild: Histogram<u64>,
    queries: Histogram<u64>,
    lag: Histogram<u64>,
    per_second: Vec<Histogram<u64>>,
    errors: BTreeMap<String, u64>,
}

/// Live counters (lock-free, read by the progress bar).
#[derive(Debug, Default)]
pub struct Counters {
    pub commands: AtomicU64,
    pub queries: AtomicU64,
    pub errors: AtomicU64,
    pub updates: AtomicU64,
    /// Connections open right now, and the most at once.
    pub connected: AtomicUsize,
    pub peak_connected: AtomicUsize,
    pub connect_failures: AtomicU64,
}

impl Counters {
    pub fn connection_opened(&self) {
        let now = self.connected.fetch_add(1, Ordering::Relaxed) + 1;
        self.peak_connected.fetch_max(now, Ordering::Relaxed);
    }

    pub fn connection_closed(&self) {
        self.connected.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Everything measured during a run.
#[derive(Debug)]
pub struct Recorder {
    pub start: Instant,
    pub counters: Counters,
    inner: Mutex<Inner>,
}

impl Recorder {
    pub fn new(start: Instant) -> Self {
        Self {
            start,
            counters: Counters::default(),
            inner: Mutex::new(Inner {
                commands: histogram(3),
                guild: histogram(3),
                queries: histogram(3),
                lag: histogram(3),
                per_second: Vec::new(),
                errors: BTreeMap::new(),
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic elsewhere while holding it leaves plain counters: still usable.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A command answered at `done` after `latency` (measured from its send or scheduled time);
    /// `guild` when it targeted a shared guild resource.
    pub fn command(&self, done: Instant, latency: Duration, guild: bool) {
        let us = (latency.as_micros() as u64).clamp(1, MAX_US);
        let second = done.saturating_duration_since(self.start).as_secs() as usize;
        self.counters.commands.fetch_add(1, Ordering::Relaxed);
        let mut inner = self.lock();
        inner.commands.saturating_record(us);
        if guild {
            inner.guild.saturating_record(us);
        }
        while inner.per_second.len() <= second {
            inner.per_second.push(histogram(2));
        }
        inner.per_second[second].saturating_record(us);
    }

    pub fn query(&self, latency: Duration) {
        let us = (latency.as_micros() as u64).clamp(1, MAX_US);
        self.counters.queries.fetch_add(1, Ordering::Relaxed);
        self.lock().queries.saturating_record(us);
    }

    /// An error reply (by its code) or a client-side failure (`timeout`, `disconnected` …).
    pub fn error(&self, code: &str) {
        self.counters.errors.fetch_add(1, Ordering::Relaxed);
        *self.lock().errors.entry(code.to_owned()).or_default() += 1;
    }

    /// An update received `lag` after the server committed it.
    pub fn update(&self, lag: Duration) {
        let us = (lag.as_micros() as u64).clamp(1, MAX_US);
        self.counters.updates.fetch_add(1, Ordering::Relaxed);
        self.lock().lag.saturating_record(us);
    }

    /// Copies of the histograms for the report.
    pub fn snapshot(&self) -> Snapshot {
        let inner = self.lock();
        Snapshot {
            commands: inner.commands.clone(),
            guild: inner.guild.clone(),
            queries: inner.queries.clone(),
            lag: inner.lag.clone(),
            timeline: inner
                .per_second
                .iter()
                .enumerate()
                .map(|(t, h)| SecondStats {
                    t: t as u64,
                    commands: h.len(),
                    p50_us: if h.is_empty() {
                        0
                    } else {
                        h.value_at_quantile(0.5)
                    },
                    p99_us: if h.is_empty() {
                        0
                    } else {
                        h.value_at_quantile(0.99)
                    },
                    max_us: h.max(),
                })
                .collect(),
            errors: inner.errors.clone(),
        }
    }
}

/// The histograms at the end of a run.
#[derive(Debug)]
pub struct Snapshot {
    pub commands: Histogram<u64>,
    pub guild: Histogram<u64>,
    pub queries: Histogram<u64>,
    pub lag: Histogram<u64>,
    pub timeline: Vec<SecondStats>,
    pub errors: BTreeMap<String, u64>,
}

/// Milliseconds since the Unix epoch on this machine's clock (the server's `updated_at` is on
/// the same clock when both run here).
pub fn unix_ms_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Microseconds since the Unix epoch.
pub fn unix_us_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_come_from_recorded_latencies() {
        let rec = Recorder::new(Instant::now());
        for ms in 1..=100u64 {
            rec.command(rec.start, Duration::from_millis(ms), false);
        }
        let snap = rec.snapshot();
        let p = Percentiles::of(&snap.commands);
        assert_eq!(p.count, 100);
        assert!((49_000..=51_000).contains(&p.p50), "p50 {}", p.p50);
        assert!(p.max >= 99_000);
        assert_eq!(snap.timeline.len(), 1);
        assert_eq!(snap.timeline[0].commands, 100);
    }
}
