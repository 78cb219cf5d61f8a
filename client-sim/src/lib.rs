//! client-sim: drives a Warden server over WebSocket the way real clients would, and checks that
//! what the server ended with is exactly what it acknowledged.
//!
//! # Layout
//! - The wire is `warden-client`'s: its `Client` (requests matched by `req`, subscriptions) for the
//!   scenario, the guild service, spectators and the audit; its bare `Connection` for bots, which
//!   drive their own socket (see [`swarm::bot`]).
//! - [`tokens`]: minting tokens with the server's secret.
//! - [`scenario`]: the seed scenario over the wire.
//! - [`config`]: what a swarm runs; [`swarm`]: bots, spectators, the final audit.
//! - [`check`]: the invariant check, a pure function over the ledger of acknowledged outcomes,
//!   what subscribers saw, and the server's final state.
//! - [`metrics`]: latency histograms, counters, delivery lag.
//! - [`report`]: the report as text and JSON; [`plot`]: as an SVG picture.
//! - [`server`]: the server's own figures, from its `/metrics` before and after (`--admin-url`).

pub mod check;
pub mod config;
pub mod metrics;
pub mod plot;
pub mod report;
pub mod scenario;
pub mod server;
pub mod swarm;
pub mod tokens;
