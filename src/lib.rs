//! Warden: a server-authoritative game-resource server, event-sourced, with CQRS.
//!
//! The layers, the one list of the modules, and the path of a command from frame to frame
//! are in `docs/architecture.md`; `docs/protocol.md` is the wire reference.

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
pub mod relay;
pub mod store;
