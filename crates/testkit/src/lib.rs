//! Warden's test kit: test support defined once for every crate's tests (the server's end-to-end
//! tests, the stores', client-sim's, the benchmarks and examples): the store conformance suite,
//! starting a node or a server, principals and commands, waiting for a condition. It is a
//! dev-dependency only, so none of it is compiled into the `warden` binary.
//!
//! # Layout
//! - [`conformance`]: the suite every storage backend passes (each check a named test in
//!   `tests/store_conformance.rs`).
//! - [`fill`]: filling a store with many resources and events fast (benchmarks, recovery tests).
//! - [`node`]: [`TestNode`], an embedded store in a temporary directory with a node on it, in one
//!   call (a config hook sets the clock, actors or metrics); [`DataDir`] to restart on the same data;
//!   [`bare_registry`] for tests that need no node.
//! - [`hooked`]: [`HookedStore`], an event store that delegates to another and lets a test delay,
//!   fail or count appends (instead of each test writing its own wrapper).
//! - [`server`]: [`LocalServer`], a real WebSocket server on `127.0.0.1:0`.
//! - [`client`]: [`Client`], the WebSocket test client (replies matched by `req`, updates kept).
//! - [`admin`]: [`LocalAdmin`], the admin HTTP listener on `127.0.0.1:0`.
//! - [`process`]: [`ServeProcess`](process::ServeProcess), `warden serve` as a child process
//!   with JSON logs (its addresses from the start line, its log lines kept).
//! - this file: principals, commands, [`execute`], and [`wait_for`], which fails the test with what
//!   it waited for instead of returning a stale value.
//! - [`mongo`]: the MongoDB test server, fresh databases, nodes on them, an nx-27017 a test owns,
//!   and a latency proxy.
// Test fixtures: a Debug impl would print nothing a failure needs.
#![allow(missing_debug_implementations)]

pub mod admin;
pub mod client;
pub mod conformance;
pub mod fill;
pub mod hooked;
pub mod mongo;
pub mod node;
pub mod process;
pub mod server;

pub use admin::LocalAdmin;
pub use client::{Client, applied, error_code};
pub use hooked::{HookedStore, Hooks};
pub use node::{DataDir, TestNode, bare_registry};
pub use server::LocalServer;

use std::future::Future;
use std::time::Duration;
use warden_core::actor::{CommandError, CommandReply, CommandRequest, Registry};
use warden_core::domain::{
    AddResource, AllocateResource, Command, CommandId, CreateResource, LockResource, PlayerId,
    Principal, ResourceId, ResourceParams, UnlockResource,
};

/// The instant a test clock starts at (2026-01-01T00:00:00Z), so amounts are exact.
pub const T0: i64 = 1_767_225_600_000;

/// How long a test waits for something that should happen before failing. A guard against a hung
/// test, not a performance assertion: generous on purpose, and a passing run never waits for it.
pub const PATIENCE: Duration = Duration::from_secs(30);

/// How often [`wait_for`] looks at its condition again.
const POLL: Duration = Duration::from_millis(5);

// ---------------------------------------------------------------- waiting

/// Waits until `condition` holds, looking again every few milliseconds; fails the test, naming
/// `what` it waited for, if it does not hold within `timeout`.
pub async fn wait_for(what: &str, timeout: Duration, mut condition: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + timeout;
    while !condition() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "gave up after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(POLL).await;
    }
}

/// [`wait_for`] with a condition that has to await (a request, a store read); the condition is
/// asked again every few milliseconds until it gives `Some`, which is returned.
pub async fn wait_for_some<T, F>(
    what: &str,
    timeout: Duration,
    mut condition: impl FnMut() -> F,
) -> T
where
    F: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
        match tokio::time::timeout(remaining, condition()).await {
            Ok(Some(value)) => return value,
            Ok(None) => {}
            Err(_) => panic!("gave up after {timeout:?} waiting for {what}"),
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "gave up after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(POLL).await;
    }
}

// ---------------------------------------------------------------- principals

/// The player most tests act as.
pub fn alice() -> Principal {
    Principal::player("alice")
}

/// Another player: not the owner of alice's resources.
pub fn bob() -> Principal {
    Principal::player("bob")
}

/// A game backend: may act on any resource and create with custom parameters.
pub fn service() -> Principal {
    Principal::service("backend")
}

// ---------------------------------------------------------------- commands

/// Catalogue gold (1000 of 5000, +0.5/s) for whoever sends it.
pub fn create_gold() -> Command {
    create_catalogue("gold")
}

/// A fresh wallet name for a type held many times per owner: `<type>:<random label>`.
pub fn fresh_name(resource_type: &str) -> String {
    format!("{resource_type}:{}", CommandId::new())
}

/// A catalogue resource of `resource_type` for whoever sends it: the sender's wallet of a type
/// held once per owner (gold, mana), a new one under a fresh name for one held many times (wood).
pub fn create_catalogue(resource_type: &str) -> Command {
    let name = (resource_type == "wood").then(|| fresh_name(resource_type));
    Command::Create(CreateResource {
        name,
        resource_type: resource_type.into(),
        owner: None,
        params: None,
    })
}

/// A new `tokens` resource of `owner`'s (under a fresh name, so each call makes another) holding
/// `initial` of `max`, with no regeneration (so the amount moves only by commands). Only a
/// service may send it.
pub fn create_fixed(owner: &str, initial: u64, max: u64) -> Command {
    Command::Create(CreateResource {
        name: Some(fresh_name("tokens")),
        resource_type: "tokens".into(),
        owner: Some(PlayerId::new(owner)),
        params: Some(ResourceParams {
            initial_amount: initial,
            max_amount: max,
            regen_milli: 0,
        }),
    })
}

pub fn allocate(id: ResourceId, amount: u64) -> Command {
    Command::Allocate(AllocateResource {
        resource_id: id,
        amount,
        reason: String::new(),
    })
}

pub fn add(id: ResourceId, amount: u64) -> Command {
    Command::Add(AddResource {
        resource_id: id,
        amount,
        reason: String::new(),
    })
}

pub fn lock(id: ResourceId, reason: &str, duration_ms: u64) -> Command {
    Command::Lock(LockResource {
        resource_id: id,
        reason: reason.into(),
        duration_ms,
    })
}

pub fn unlock(id: ResourceId) -> Command {
    Command::Unlock(UnlockResource { resource_id: id })
}

/// `command` sent by `who` under a fresh command id.
pub fn request(who: &Principal, command: Command) -> CommandRequest {
    request_id(CommandId::new(), who, command)
}

/// `command` sent by `who` under `command_id` (to send it again, or reuse the id).
pub fn request_id(command_id: CommandId, who: &Principal, command: Command) -> CommandRequest {
    CommandRequest {
        command_id,
        principal: who.clone(),
        command,
    }
}

/// Runs `command` as `who` under a fresh command id.
pub async fn execute(
    registry: &Registry,
    who: &Principal,
    command: Command,
) -> Result<CommandReply, CommandError> {
    registry.execute(request(who, command)).await
}

/// Runs `command` as `who` under `command_id` (to send it again, or reuse the id).
pub async fn execute_id(
    registry: &Registry,
    command_id: CommandId,
    who: &Principal,
    command: Command,
) -> Result<CommandReply, CommandError> {
    registry.execute(request_id(command_id, who, command)).await
}

/// A `tokens` resource of `owner`'s with `initial` of `max` and no regeneration, created by
/// [`service`]; its id.
pub async fn given_fixed(registry: &Registry, owner: &str, initial: u64, max: u64) -> ResourceId {
    execute(registry, &service(), create_fixed(owner, initial, max))
        .await
        .expect("a service creates a resource with custom parameters")
        .resource_id
}
