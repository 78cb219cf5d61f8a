//! How a client connects, waits and retries.

use std::time::Duration;

/// Settings of a [`Client`](crate::Client) (and of a [`Connection`](crate::Connection)).
/// Every field has a default ([`ClientConfig::default`]); change the ones you need:
///
/// ```
/// let mut config = warden_client::ClientConfig::default();
/// config.request_timeout = std::time::Duration::from_secs(5);
/// ```
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// How long the server has to answer the upgrade and send `welcome` (default 15 s).
    pub connect_timeout: Duration,
    /// How long one request waits for its reply before failing with
    /// [`ClientError::Timeout`](crate::ClientError::Timeout) (default 30 s).
    pub request_timeout: Duration,
    /// How long [`Client::reconnect`](crate::Client::reconnect) keeps trying to connect again,
    /// with back-off, before giving up (default 30 s: a server restart fits in it).
    pub reconnect_window: Duration,
    /// How [`Client::execute_retrying`](crate::Client::execute_retrying) retries.
    pub retry: RetryPolicy,
    /// The WebSocket read buffer, in bytes; `None` keeps the library's default (128 KiB). A
    /// process holding thousands of mostly idle connections wants a small one (4 KiB).
    pub read_buffer_bytes: Option<usize>,
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(15),
            request_timeout: Duration::from_secs(30),
            reconnect_window: Duration::from_secs(30),
            retry: RetryPolicy::default(),
            read_buffer_bytes: None,
        }
    }
}

/// How often, and how patiently, a command with an unknown outcome is sent again.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Sends of one command, the first included, before its last error is returned (default 8).
    pub max_attempts: u32,
    /// Pause before the first resend after a refusal that asks for one (`rate_limited`,
    /// `conflict`, …); it doubles with each attempt (default 50 ms).
    pub backoff_min: Duration,
    /// The longest pause between two sends (default 2 s).
    pub backoff_max: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 8,
            backoff_min: Duration::from_millis(50),
            backoff_max: Duration::from_secs(2),
        }
    }
}

impl RetryPolicy {
    /// The pause after failed attempt number `attempt` (1-based): `backoff_min` doubled per
    /// attempt up to `backoff_max`, plus up to half of it at random so a thousand clients do not
    /// come back at once.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let base = self
            .backoff_min
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(16))
            .min(self.backoff_max);
        base + jitter(base / 2)
    }
}

/// A random duration in `0..=max`, without a random-number crate: std's hasher keys are random.
pub(crate) fn jitter(max: Duration) -> Duration {
    use std::hash::BuildHasher;
    let max_us = max.as_micros() as u64;
    if max_us == 0 {
        return Duration::ZERO;
    }
    let r = std::collections::hash_map::RandomState::new().hash_one(std::time::Instant::now());
    Duration::from_micros(r % (max_us + 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_backoff_doubles_up_to_its_cap_with_bounded_jitter() {
        // Guards against retry storms (no pause) and against pauses that grow without bound.
        let p = RetryPolicy::default();
        for attempt in 1..40 {
            let base = (p.backoff_min * 2u32.pow((attempt - 1).min(16))).min(p.backoff_max);
            let got = p.backoff(attempt);
            assert!(got >= base && got <= base + base / 2, "{attempt}: {got:?}");
        }
    }
}
