//! An async Rust client for Warden, for games (Bevy, macroquad, …) and headless bots: commands
//! that keep their id across retries, so each applies at most once; replies matched to their
//! requests; subscriptions that resume where they stopped after a reconnect.
//!
//! It speaks protocol version 1 (`docs/protocol.md`) over a plain `ws://` WebSocket, with the
//! types of [`warden_protocol`], and depends on nothing of the server.
//!
//! ```no_run
//! use warden_client::{Client, ClientError, Command, ErrorCode};
//!
//! # async fn run() -> Result<(), ClientError> {
//! let client = Client::connect("ws://127.0.0.1:7350", "TOKEN").await?;
//! println!("playing as {}", client.welcome().player);
//!
//! let gold = client.execute_retrying(&Command::create("gold")).await?;
//! // One command per player intent; every retry of it carries the same id.
//! let buy = Command::allocate(gold.resource_id, 200, "Purchase item");
//! match client.execute_retrying(&buy).await {
//!     Ok(applied) => println!("{} gold left", applied.resource.amount),
//!     Err(ClientError::Refused { code: ErrorCode::Insufficient, .. }) => println!("too poor"),
//!     Err(e) if e.is_unknown_outcome() => println!("unknown yet; send `buy` again later"),
//!     Err(e) => return Err(e),
//! }
//!
//! let mut updates = client.subscribe_resource(gold.resource_id, None).await?;
//! while let Some(update) = updates.recv().await {
//!     println!("v{}: {}", update.version, update.resource.amount);
//! }
//! # Ok(())
//! # }
//! ```
//!
//! # Layout
//! - [`Client`]: the shared handle (requests, commands, reads, subscriptions, reconnect); its
//!   module notes explain the design of retries and resume.
//! - [`Command`]: a command and its id, built once and sent as often as needed; [`Applied`].
//! - [`Subscription`] and [`Update`]: a subscription's snapshot and stream.
//! - [`Connection`]: one socket without a background task, for programs that drive many
//!   connections themselves (load generators).
//! - [`ClientError`]: every failure, and [`ClientError::is_unknown_outcome`].
//! - [`ClientConfig`] and [`RetryPolicy`]: timeouts, reconnect window, back-off.
#![warn(missing_docs)]

mod client;
mod command;
mod config;
mod connection;
mod error;
mod subscription;

pub use client::{At, Client, PastState};
pub use command::{Applied, Command, CommandKind};
pub use config::{ClientConfig, RetryPolicy};
pub use connection::{Connection, Welcome};
pub use error::ClientError;
pub use subscription::{Subscription, Update};

/// A frame already encoded, for [`Connection::send_frame`].
pub use tokio_tungstenite::tungstenite::Bytes;
/// The wire crate, for the messages and types not re-exported here.
pub use warden_protocol as protocol;
pub use warden_protocol::{
    ClientResource, CloseCode, CommandId, ErrorCode, HistoryEvent, IssuerRole, Limits, PlayerId,
    ResourceId, ResourceParams, Role, Timestamp, Wallet,
};
