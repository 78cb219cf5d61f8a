//! What a session checks on the way in: the envelope read before a message's full decode (so
//! errors carry the `req`), the known message kinds, and the token bucket behind the rate limits.

use crate::protocol::RequestId;
use serde::Deserialize;
use tokio::time::Instant;

/// Message kinds a client may send (for telling `unknown_type` from `bad_message`).
pub(crate) const KNOWN_TYPES: &[&str] = &[
    "create",
    "allocate",
    "add",
    "lock",
    "unlock",
    "get",
    "list",
    "history",
    "state_at",
    "subscribe",
    "unsubscribe",
    "ping",
];

/// The first thing read from every message: its kind and request id, whatever else is wrong.
#[derive(Deserialize)]
pub(crate) struct Envelope {
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub req: Option<MaybeReq>,
}

/// A `req` field of any type; only an unsigned integer counts as a request id.
#[derive(Deserialize)]
#[serde(untagged)]
pub(crate) enum MaybeReq {
    Id(RequestId),
    Other(serde::de::IgnoredAny),
}

/// A token bucket: `rate` tokens per second up to `burst`. A rate of 0 never runs out.
pub(crate) struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    at: Instant,
}

impl TokenBucket {
    pub fn new(rate: u32, burst: u32) -> Self {
        let burst = f64::from(burst.max(1));
        Self {
            rate: f64::from(rate),
            burst,
            tokens: burst,
            at: Instant::now(),
        }
    }

    pub fn take(&mut self) -> bool {
        if self.rate == 0.0 {
            return true;
        }
        let now = Instant::now();
        let elapsed = now.duration_since(self.at).as_secs_f64();
        self.at = now;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}
