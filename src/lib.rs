//! Warden: a server-authoritative game-resource server, event-sourced, with CQRS.
//!
//! This package is the server: it puts the crates together. `docs/architecture.md` has the
//! crate graph, the reason for each boundary and the path of a command from frame to frame;
//! `docs/protocol.md` is the wire reference.
//!
//! - [`backend`]: opens the store the configuration names (the one place that knows every
//!   backend crate).
//! - [`admin`]: the admin HTTP listener: `/metrics`, `/healthz`, `/readyz`, the console.
//! - [`demo`]: the seed scenario run in-process (`warden demo`).
//!
//! The rest lives in `crates/`: `warden-protocol` (the wire), `warden-core` (rules, actors, the
//! query side, store traits), `warden-store-embedded` and `warden-store-mongo` (the backends),
//! `warden-net` (the WebSocket front end), `warden-testkit` (the conformance suite).

pub mod admin;
pub mod backend;
pub mod demo;
