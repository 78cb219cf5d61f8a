//! What a swarm runs: its size, pace and timings.

use std::time::Duration;
use warden_client::ClientConfig;

/// Read buffer of every connection: 4 KiB instead of the WebSocket library's 128 KiB default, so
/// ten thousand idle bots cost tens of megabytes, not more than a gigabyte.
pub const READ_BUFFER_BYTES: usize = 4 * 1024;

/// What to run. Every field has a default (see [`SwarmConfig::default`]).
#[derive(Clone, Debug)]
pub struct SwarmConfig {
    /// Base URL of the server (`ws://127.0.0.1:7350`).
    pub url: String,
    pub bots: usize,
    pub spectators: usize,
    /// How long bots send, counted from the start (the ramp-up is inside it).
    pub duration: Duration,
    /// Open-loop total commands per second across all bots; `None` is closed-loop.
    pub rate: Option<f64>,
    /// Fraction of bots that also work on the shared guild resources (as a service identity).
    pub guild_fraction: f64,
    /// How many shared guild resources.
    pub guild_resources: usize,
    /// Bots start spread evenly over this.
    pub ramp_up: Duration,
    /// Catalogue type each bot creates for itself (`wood` has no regeneration, so amounts check
    /// exactly; a regenerating type is counted as "amount unchecked").
    pub own_type: String,
    /// Owners (bots) each spectator subscribes to; capped by the server's subscription limit.
    pub watch: usize,
    /// A request unanswered this long is resent with the same ids.
    pub request_timeout: Duration,
    /// Duration of a bot's lock; bots unlock before it runs out, and at the end of the run.
    pub lock_ms: u64,
    /// Least time between two closed-loop sends of one bot (besides the server's rate limit).
    pub think: Duration,
    /// After a dropped connection, how long a bot or spectator keeps trying to reconnect (a
    /// server restart must fit in it).
    pub reconnect_for: Duration,
}

impl Default for SwarmConfig {
    fn default() -> Self {
        Self {
            url: "ws://127.0.0.1:7350".into(),
            bots: 100,
            spectators: 10,
            duration: Duration::from_secs(30),
            rate: None,
            guild_fraction: 0.1,
            guild_resources: 4,
            ramp_up: Duration::from_secs(5),
            own_type: "wood".into(),
            watch: 10,
            request_timeout: Duration::from_secs(10),
            lock_ms: 30_000,
            think: Duration::ZERO,
            reconnect_for: Duration::from_secs(30),
        }
    }
}

impl SwarmConfig {
    /// The settings of every connection a swarm opens.
    pub fn client_config(&self) -> ClientConfig {
        ClientConfig {
            request_timeout: self.request_timeout,
            reconnect_window: self.reconnect_for,
            read_buffer_bytes: Some(READ_BUFFER_BYTES),
            ..ClientConfig::default()
        }
    }
}
