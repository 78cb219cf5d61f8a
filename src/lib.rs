//! Warden: a server-authoritative game-resource server, event-sourced, with CQRS.
//!
//! # Layout
//! - [`domain`]: the pure rules. `ServerResource` / `ClientResource`, commands, events,
//!   `decide` (may refuse, never mutates) and `apply` (never fails). No I/O, no clock reads.
//! - [`store`]: the event-store and read-model traits, the embedded redb backend with group
//!   commit, the MongoDB backend, and the conformance suite every backend passes.
//! - [`auth`]: signed tokens (JWT) and the server secret.
//! - [`actor`]: one tokio task per live resource; the [`actor::Registry`] routes commands to them.
//! - [`hub`]: the node's hub that fans committed changes out to listeners.
//! - [`projection`]: the query handler, and repair and rebuild of the read model from the log.
//! - [`clock`]: where actors get "now" (a manual clock in tests).
//! - `relay`: brings other nodes' commits (shared MongoDB) to this node's hub (with the
//!   `mongodb` feature, on by default).
//! - [`node`]: wires the above together for one server node.
//! - [`net`]: the WebSocket front end: accept loop, sessions, gap-free subscriptions.
//! - [`demo`]: the seed scenario.
//! - [`metrics`]: the node's Prometheus instruments, registered once, recorded by every layer.
//! - [`admin`]: the admin HTTP listener: `/metrics`, `/healthz`, `/readyz`.
//! - [`protocol`]: the wire types, shared with `client-sim`.

pub mod actor;
pub mod admin;
pub mod auth;
pub mod clock;
pub mod demo;
pub mod domain;
pub mod hub;
pub mod metrics;
pub mod net;
pub mod node;
pub mod projection;
pub mod protocol;
#[cfg(feature = "mongodb")]
pub mod relay;
pub mod store;
