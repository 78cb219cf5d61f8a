//! Warden's core: everything between the wire and the disk that knows no backend and no socket.
//!
//! Layout (docs/architecture.md has the whole picture and the path of a command):
//! - [`domain`]: the pure rules (`decide`, `apply`, `replay`); no I/O, no clock reads.
//! - [`store`]: the `EventStore` and `ReadModelStore` traits every backend implements, their
//!   errors, the backend-neutral `CommitFeed`, and export/import.
//! - [`actor`]: one `ResourceActor` per live resource and the `Registry` that finds them.
//! - [`hub`]: the node's fan-out of committed changes.
//! - [`projection`]: the `QueryHandler` (every read, with its authorization) and read-model
//!   repair.
//! - [`relay`]: brings other nodes' commits (a shared store's `CommitFeed`) onto the hub.
//! - [`node`]: the `Node` that starts and stops all of the above on a `Backend`.
//! - [`metrics`]: the node's Prometheus instruments.
//! - [`clock`]: where time comes from (the rules take it as an argument).

pub mod actor;
pub mod clock;
pub mod domain;
pub mod hub;
pub mod metrics;
pub mod node;
pub mod projection;
pub mod relay;
pub mod store;
