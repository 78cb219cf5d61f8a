//! The WebSocket front end: accept loop, one session per connection, gap-free live subscriptions.
//!
//! - [`listener`]: binds nothing itself: [`serve`] takes a bound `TcpListener` (tests use port 0),
//!   caps connections with a semaphore, authenticates the upgrade and spawns a session.
//! - [`inbound`]: reading a client frame into a request (shape, envelope, decode), pure.
//! - `session`: one task per connection; decodes requests, enforces the limits below, runs
//!   commands and queries (pipelined up to [`NetConfig::max_in_flight`]), writes replies.
//! - `requests`: what each command and read does, as plain async functions over the node's API.
//! - [`request`]: the one conversion of a client message into a domain command.
//! - [`auth`]: tokens and the secret that signs them.
//! - `reply`: the one place where every error becomes an `error` reply with its code.
//! - `subscriptions`: one task per live subscription; delivers every committed change in
//!   version order with no gap and no repeat, repairing gaps from the event log.
//! - `outbox`: a session's bounded outbound queue, shared by its replies and subscriptions.
//! - `rate`: the token bucket behind the per-session limits.
//!
//! `docs/protocol.md` is the reference for client authors; the constants here and that page
//! change together.

pub mod auth;
pub mod inbound;
mod listener;
mod outbox;
mod rate;
mod reply;
pub mod request;
mod requests;
mod session;
mod subscriptions;

pub use listener::{Server, serve};
pub use reply::Coded;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use thiserror::Error;
use warden_protocol::Limits;

/// Limits and timings of the WebSocket front end, with documented defaults. The client-visible
/// ones are announced in `welcome` (see [`NetConfig::limits`]).
#[derive(Clone, Debug)]
pub struct NetConfig {
    /// Largest message (and frame) accepted; a bigger one closes the session with 1009.
    pub max_frame_bytes: usize,
    /// Sustained commands per second per session (token bucket); `0` means unlimited. Over the
    /// limit a command is refused with `rate_limited` and the session stays open.
    pub commands_per_second: u32,
    /// Commands a session may send in one burst before the rate applies.
    pub commands_burst: u32,
    /// Live subscriptions per session; one more is refused with `too_many_subscriptions`.
    pub max_subscriptions: usize,
    /// Requests of one session being processed at once; beyond it the server stops reading that
    /// connection until one finishes (TCP back-pressure, nothing is refused).
    pub max_in_flight: usize,
    /// Messages queued for one session's socket. Every producer uses `try_send`; when it is full
    /// the session is closed with [`CloseCode::SlowConsumer`](warden_protocol::CloseCode::SlowConsumer) so nobody else ever waits for it.
    pub outbound_queue: usize,
    /// A session that sends nothing (not even a pong) for this long is closed with [`CloseCode::Idle`](warden_protocol::CloseCode::Idle).
    pub idle_timeout: Duration,
    /// The server pings every session this often, so a live client always has something to answer.
    pub ping_interval: Duration,
    /// Time allowed for the TCP + WebSocket upgrade.
    pub handshake_timeout: Duration,
    /// Time allowed to deliver a close frame (and a shutdown's last replies) to a client.
    pub close_timeout: Duration,
    /// Open connections; further connections wait in the kernel's accept backlog.
    pub max_connections: usize,
    /// Undecodable messages tolerated in a burst (refilled at one per second); past it the
    /// session is closed with [`CloseCode::Policy`](warden_protocol::CloseCode::Policy).
    pub bad_message_burst: u32,
    /// WebSocket read buffer per connection. Small on purpose: tungstenite's 128 KiB default
    /// costs ~138 KB per idle session. With 2 KiB an idle session costs ~8.3 KB (4 KiB: ~10.3 KB);
    /// a larger frame still arrives whole, the buffer grows for it.
    pub read_buffer_bytes: usize,
    /// Bytes the WebSocket layer buffers before writing to the socket (flushed anyway whenever
    /// the outbound queue is empty).
    pub write_buffer_bytes: usize,
}

impl Default for NetConfig {
    fn default() -> Self {
        Self {
            max_frame_bytes: 64 * 1024,
            commands_per_second: 1_000,
            commands_burst: 2_000,
            max_subscriptions: 64,
            max_in_flight: 64,
            outbound_queue: 1_024,
            idle_timeout: Duration::from_secs(60),
            ping_interval: Duration::from_secs(20),
            handshake_timeout: Duration::from_secs(10),
            close_timeout: Duration::from_secs(2),
            max_connections: 20_000,
            bad_message_burst: 32,
            read_buffer_bytes: 2 * 1024,
            write_buffer_bytes: 16 * 1024,
        }
    }
}

impl NetConfig {
    /// The limits a client is told about in `welcome`.
    pub fn limits(&self) -> Limits {
        Limits {
            max_frame_bytes: self.max_frame_bytes.try_into().unwrap_or(u32::MAX),
            commands_per_second: self.commands_per_second,
            max_subscriptions: self.max_subscriptions.try_into().unwrap_or(u32::MAX),
            idle_timeout_ms: self.idle_timeout.as_millis().try_into().unwrap_or(u64::MAX),
            outbound_queue: self.outbound_queue.try_into().unwrap_or(u32::MAX),
            commands_burst: self.commands_burst,
            max_in_flight: self.max_in_flight.try_into().unwrap_or(u32::MAX),
            ping_interval_ms: self
                .ping_interval
                .as_millis()
                .try_into()
                .unwrap_or(u64::MAX),
        }
    }
}

/// Counters of the front end, for logs, metrics and tests. All relaxed: they are statistics.
#[derive(Debug, Default)]
pub struct NetStats {
    /// TCP connections accepted.
    pub accepted: AtomicU64,
    /// Upgrades refused (bad token, wrong path or subprotocol, handshake failure).
    pub refused: AtomicU64,
    /// Sessions currently open.
    pub open: AtomicU64,
    /// Sessions closed because their outbound queue overflowed.
    pub slow_consumers: AtomicU64,
    /// Sessions closed for protocol abuse (text, oversize or a flood of undecodable messages).
    pub abuse_closes: AtomicU64,
    /// Requests answered.
    pub requests: AtomicU64,
}

impl NetStats {
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
    fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// Why the server stopped serving.
#[derive(Debug, Error)]
pub enum NetError {
    #[error("cannot read the listener's address: {0}")]
    Listener(#[source] std::io::Error),
}
