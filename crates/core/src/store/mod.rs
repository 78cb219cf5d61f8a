//! The event store (source of truth) and the read-model store, as traits with one conformance
//! suite that every backend passes.
//!
//! - [`EventStore`]: events keyed by (resource id, version), unique; appends state the version they
//!   expect; a command's events commit atomically with its command id, so a repeat is detected.
//! - [`ReadModelStore`]: the client schema, kept apart from the server schema, written only
//!   forward (a view never replaces a newer one).
//! - [`CommitFeed`] ([`feed`]): how a node notices the commits other nodes make to a shared log,
//!   in domain terms; what the relay reads.
//! - Errors ([`StoreError`], [`AppendError`], [`OpenError`]): one enum per family of operations,
//!   one variant per cause, with its source.
//!
//! Backends live in crates of their own: `warden-store-embedded` (a fjall database under a data
//! directory) and `warden-store-mongo` (one MongoDB database, shared by several nodes); the
//! server picks one from its configuration. `warden-testkit` holds the conformance suite.

mod error;
pub mod feed;
pub mod job;
pub mod transfer;

pub use error::{
    AppendError, Cause, MalformedAppend, OpenError, Shared, StoreError, corrupt, encode,
};
pub use feed::CommitFeed;

use crate::domain::{
    ClientResource, CommandId, EventEnvelope, PlayerId, ResourceId, ServerResource,
};
use async_trait::async_trait;
use std::sync::Arc;

/// What to append: the events a command produced, on top of the version they were decided on.
#[derive(Clone, Debug)]
pub struct AppendRequest {
    pub resource_id: ResourceId,
    /// The version the events were decided on; the append fails if the stored head differs.
    pub expected_version: u64,
    pub command_id: CommandId,
    /// Versions `expected_version + 1 ..`, in order. Never empty.
    pub events: Vec<EventEnvelope>,
    /// The resource's state after these events. Every backend makes its client-schema view
    /// readable in the commit path before acknowledging (the embedded store in memory until its
    /// next view checkpoint, MongoDB right after the commit documents), and keeps it as the
    /// snapshot when one is due, so the read model follows the log without a separate updater.
    pub state: ServerResource,
}

impl AppendRequest {
    /// Checks the request is well formed: events present, all of this resource and this command,
    /// stamped `expected_version + 1, + 2, …`, and the state the one they lead to. Every backend
    /// calls it before writing, so a bug in a caller is refused (as [`StoreError::Malformed`])
    /// instead of writing a log with holes.
    pub fn validate(&self) -> Result<(), MalformedAppend> {
        if self.events.is_empty() {
            return Err(MalformedAppend::NoEvents);
        }
        let in_order = self
            .events
            .iter()
            .zip(self.expected_version + 1..)
            .all(|(e, v)| {
                e.version == v
                    && e.resource_id == self.resource_id
                    && e.command_id == self.command_id
            });
        if !in_order {
            return Err(MalformedAppend::Misnumbered {
                command_id: self.command_id,
                resource_id: self.resource_id,
                first: self.expected_version + 1,
            });
        }
        let last = self.expected_version + self.events.len() as u64;
        if self.state.id != self.resource_id || self.state.version != last {
            return Err(MalformedAppend::StateMismatch {
                command_id: self.command_id,
                resource_id: self.resource_id,
                version: last,
                state_id: self.state.id,
                state_version: self.state.version,
            });
        }
        Ok(())
    }
}

/// Where a command's events landed. Also the record kept per command id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CommitRecord {
    pub resource_id: ResourceId,
    pub command_id: CommandId,
    pub first_version: u64,
    pub last_version: u64,
}

/// A resource as stored: its latest snapshot (if any) and the events after it.
#[derive(Clone, Debug, Default)]
pub struct Loaded {
    pub snapshot: Option<ServerResource>,
    pub events: Vec<EventEnvelope>,
}

impl Loaded {
    /// The current state: the snapshot with the later events folded in.
    pub fn state(&self) -> Option<ServerResource> {
        crate::domain::replay(self.snapshot.clone(), &self.events)
    }
}

#[async_trait]
pub trait EventStore: Send + Sync + 'static {
    /// Appends atomically if the stored head is `expected_version` and the command id is new.
    /// Returning `Ok` means committed and durable.
    async fn append(&self, req: AppendRequest) -> Result<CommitRecord, AppendError>;

    /// Appends several requests in order, each as [`append`](Self::append) would (its own version
    /// check, command record and outcome), and returns their outcomes in the same order.
    ///
    /// An actor uses it to commit a run of commands it decided one after another: each request
    /// then expects the version the previous one leads to and was decided on its state. So the
    /// requests form a chain: after the first that fails, none of the rest is attempted; each is
    /// answered `Conflict` (even if another writer happened to bring the head to the version it
    /// expects, its events were decided on a state that never existed). Every backend implements
    /// it (no default): the embedded store commits the chain in one group commit, MongoDB in one
    /// ordered insert, and test stores delegate to one of them, so actors are tested on the
    /// commit semantics they run on.
    async fn append_many(&self, reqs: Vec<AppendRequest>)
    -> Vec<Result<CommitRecord, AppendError>>;

    /// The latest snapshot and the events after it.
    async fn load(&self, id: ResourceId) -> Result<Loaded, StoreError>;

    /// Up to `limit` events with version > `after_version`, in version order.
    async fn events(
        &self,
        id: ResourceId,
        after_version: u64,
        limit: usize,
    ) -> Result<Vec<EventEnvelope>, StoreError>;

    /// The commit a command id produced, if it was applied.
    async fn find_command(&self, command_id: CommandId)
    -> Result<Option<CommitRecord>, StoreError>;

    /// [`find_command`](Self::find_command) for several ids, answered in the same order. A backend
    /// may look them up in one read; the default asks one at a time.
    async fn find_commands(
        &self,
        command_ids: &[CommandId],
    ) -> Result<Vec<Option<CommitRecord>>, StoreError> {
        let mut records = Vec::with_capacity(command_ids.len());
        for id in command_ids {
            records.push(self.find_command(*id).await?);
        }
        Ok(records)
    }

    /// The latest version of a resource (0 if it has no events).
    async fn head(&self, id: ResourceId) -> Result<u64, StoreError>;

    /// Every resource with at least one event (for rebuilding projections).
    async fn resource_ids(&self) -> Result<Vec<ResourceId>, StoreError>;
}

#[async_trait]
pub trait ReadModelStore: Send + Sync + 'static {
    /// Stores each view unless a view of the same or a newer version is already there.
    async fn upsert(&self, views: Vec<ClientResource>) -> Result<(), StoreError>;
    async fn get(&self, id: ResourceId) -> Result<Option<ClientResource>, StoreError>;
    async fn list_by_owner(&self, owner: &PlayerId) -> Result<Vec<ClientResource>, StoreError>;
    /// Forgets every view (before a rebuild from the log).
    async fn clear(&self) -> Result<(), StoreError>;
}

/// Which kind of backend a node runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, strum::IntoStaticStr, strum::VariantArray)]
#[strum(serialize_all = "snake_case")]
pub enum BackendKind {
    /// A data directory of this process (`warden-store-embedded`).
    Embedded,
    /// One MongoDB database shared by several nodes (`warden-store-mongo`).
    Mongodb,
}

impl BackendKind {
    /// The name logs and `/readyz` use: `embedded` or `mongodb`.
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// The stores a node runs on, as chosen by configuration.
#[derive(Clone)]
pub struct Backend {
    pub events: Arc<dyn EventStore>,
    pub read: Arc<dyn ReadModelStore>,
    /// Set when other nodes may commit to the same log (MongoDB): a node follows it with a
    /// relay (`crate::relay`) to notice their changes.
    pub feed: Option<Arc<dyn CommitFeed>>,
    pub kind: BackendKind,
}

impl std::fmt::Debug for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Backend")
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

impl Backend {
    /// Stores of this process only (no other node shares them, so no relay): the embedded
    /// store, and tests and tools that wrap or combine stores.
    pub fn local(events: Arc<dyn EventStore>, read: Arc<dyn ReadModelStore>) -> Self {
        Self {
            events,
            read,
            feed: None,
            kind: BackendKind::Embedded,
        }
    }

    /// The feed of commits other nodes make to the same log, when the log is shared (MongoDB).
    /// `None` on the embedded store, which one node owns.
    pub fn feed(&self) -> Option<Arc<dyn CommitFeed>> {
        self.feed.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Balance, ResourceEvent, Timestamp, replay, stamp};

    /// A well-formed append: the creation of a new resource.
    fn creation() -> AppendRequest {
        let id = ResourceId::new();
        let command_id = CommandId::new();
        let by = PlayerId::new("alice");
        let events = stamp(
            id,
            0,
            command_id,
            crate::domain::Role::Player,
            Timestamp(1_000),
            vec![ResourceEvent::ResourceCreated {
                name: None,
                owner: by.clone(),
                resource_type: "gold".into(),
                max_amount: 100,
                regen_milli: 0,
                balance: Balance {
                    amount: 10,
                    regen_carry: 0,
                    regen_at: Timestamp(1_000),
                },
                by,
            }],
        );
        AppendRequest {
            resource_id: id,
            expected_version: 0,
            command_id,
            state: replay(None, &events).expect("a creation leads to a state"),
            events,
        }
    }

    #[test]
    fn a_well_formed_append_passes() {
        assert_eq!(creation().validate(), Ok(()));
    }

    #[test]
    fn an_append_without_events_is_malformed() {
        let mut req = creation();
        req.events.clear();
        assert_eq!(req.validate(), Err(MalformedAppend::NoEvents));
    }

    #[test]
    fn events_not_stamped_after_the_expected_version_are_malformed_not_corrupt() {
        // Given an append whose event skips a version,
        let mut req = creation();
        req.events[0].version = 2;
        // when it is validated, then it is refused as the caller's bug,
        let refused = req.validate().unwrap_err();
        assert_eq!(
            refused,
            MalformedAppend::Misnumbered {
                command_id: req.command_id,
                resource_id: req.resource_id,
                first: 1,
            }
        );
        // which a store reports as `Malformed`, apart from a record it cannot read back.
        let err = AppendError::from(refused);
        assert!(
            matches!(err, AppendError::Store(StoreError::Malformed(_))),
            "{err:?}"
        );
        assert!(err.to_string().starts_with("malformed append: "), "{err}");
    }

    #[test]
    fn a_state_of_another_version_is_malformed() {
        let mut req = creation();
        req.state.version = 2;
        assert!(matches!(
            req.validate(),
            Err(MalformedAppend::StateMismatch {
                version: 1,
                state_version: 2,
                ..
            })
        ));
    }
}
