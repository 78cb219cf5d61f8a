//! The MongoDB backend: the event log, snapshots and the read model in three collections of one
//! database, shared by every Warden node that points at it (see `docs/storage.md`).
//!
//! - `commits`, the source of truth: one document per committed command, holding all of its
//!   events, so a command's events commit atomically with a single-document insert and no
//!   transaction. `_id` is the command id (idempotency); a unique index on
//!   `(resource_id, first_version)` is the optimistic-concurrency gate.
//! - `resources`: one server-schema snapshot per resource, replaced only by a newer version.
//! - `read_model`: one client-schema view per resource, replaced only by a newer version.
//!
//! **Why the log stays gapless and unique.** An append that expects version `e` is inserted only
//! once `e` is known to be a *boundary*: `0`, or the last version of a stored commit (read from
//! MongoDB, or remembered from an earlier read or commit of this store: commits are never deleted,
//! so a boundary stays one for good). It claims `first_version = e + 1`. Two commits with the same
//! predecessor claim the same `first_version`, and the unique index lets only one of them in. So
//! every commit has exactly one predecessor and at most one successor: starting from version 0 the
//! commits form a single chain whose version ranges are contiguous and disjoint — every
//! (resource id, version) appears once, with no gap. The check and the insert need no transaction
//! between them: whatever happens in between, the index decides.
//!
//! **Group commit.** Appends go through one writer task ([`writer`]), which takes every append
//! waiting (up to [`MongoConfig::max_batch`]) and commits them in a few round trips, whatever
//! their number; see that module for how an actor's chain of appends stays safe in one batch.
//! Snapshots and views are written in the same commit path, before anyone is answered.
//!
//! **Types.** Versions, amounts and timestamps are BSON Int64 (timestamps as milliseconds, not
//! BSON dates, because whole-number milliseconds are what the domain uses). UUIDs are stored as
//! their canonical strings: the same text as in logs, the wire protocol and a `mongosh` query, v7
//! strings sort by time just as the bytes do, and serde writes them without custom code. Documents
//! are always written whole (insert or replace), never patched with `$set`.
//!
//! **Failure.** Every operation is bounded by [`MongoConfig::op_timeout`] and server selection by
//! [`MongoConfig::server_selection_timeout`]: a lost MongoDB turns into a [`StoreError`]
//! ([`Mongo`](StoreError::Mongo) or [`Timeout`](StoreError::Timeout)) within seconds, and the
//! driver reconnects by itself when it returns. An insert whose reply is lost is an error to the
//! caller (never a success); its retry with the same command id finds the first commit by `_id`
//! and is answered as a duplicate.
//!
//! **Commit feed.** Nodes sharing the database learn of each other's commits through the store
//! as a [`CommitFeed`](warden_core::store::CommitFeed) ([`feed`]): batched reads of `commits` after
//! known versions, and a change stream of the inserts other nodes make, where the server has one.
//! The node's relay reads only that trait, never these documents.
//!
//! **Round trips.** Every operation sent to MongoDB is counted by kind ([`MongoStore::round_trips`]),
//! so what a command costs in network round trips can be measured (`examples/store_bench.rs`).

mod conn;
mod feed;
mod round_trips;
mod writer;

/// For `map_err`: the driver failed the operation (unreachable, refused, or the reply lost).
pub(crate) fn driver(e: mongodb::error::Error) -> StoreError {
    StoreError::engine("MongoDB", e)
}

use conn::{Conn, Known, create_indexes};
pub use round_trips::RoundTrips;
use round_trips::{Counters, Op};

use async_trait::async_trait;
use futures::TryStreamExt;
use mongodb::bson::{self, Bson, Document, doc};
use mongodb::options::{ClientOptions, WriteConcern};
use mongodb::{Client, Database};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;
use warden_core::domain::{
    ClientResource, CommandId, EventEnvelope, PlayerId, ResourceId, ServerResource,
};
use warden_core::store::job;
use warden_core::store::{
    AppendError, AppendRequest, Backend, BackendKind, CommitRecord, EventStore, Loaded, OpenError,
    ReadModelStore, StoreError, corrupt, encode,
};

/// MongoDB's error code for a unique-index violation.
const DUPLICATE_KEY: i32 = 11000;
/// The database used when the URI names none.
pub const DEFAULT_DATABASE: &str = "warden";
/// The wire version of MongoDB 8.0, the first with the `bulkWrite` command.
const WIRE_VERSION_8_0: i32 = 25;
/// Resources whose last known head (and written view) the store remembers; past this it forgets
/// them all and starts again (a forgotten head costs one query at the next append, nothing else).
const KNOWN_CAP: usize = 1 << 20;
/// Appends (one per caller) that may wait for the writer; further callers wait for room.
pub const WRITER_QUEUE: usize = 16 * 1024;

/// Connection tunables, with defaults chosen so a lost MongoDB fails commands fast.
#[derive(Clone, Debug)]
pub struct MongoConfig {
    /// How long an operation waits for a usable server before failing (driver default: 30 s).
    pub server_selection_timeout: Duration,
    /// TCP connect and handshake timeout of one connection.
    pub connect_timeout: Duration,
    /// Upper bound of any single store operation, including retries inside the driver.
    pub op_timeout: Duration,
    /// When a write counts as done, unless the URI says otherwise (`?w=…&journal=…` win).
    /// Default `w: majority, j: true`: acknowledged means journaled on a majority of a replica
    /// set, so it survives a failover. `None`: the server's default.
    pub write_concern: Option<WriteConcern>,
    /// Most appends one group commit takes (a caller's chain is never split, so one may go over).
    pub max_batch: usize,
    /// Write snapshots and views with one `bulkWrite` when the server has it (MongoDB 8.0+);
    /// `false` always uses one `update` command per collection, as on older servers.
    pub bulk_write: bool,
}

impl Default for MongoConfig {
    fn default() -> Self {
        Self {
            server_selection_timeout: Duration::from_secs(2),
            connect_timeout: Duration::from_secs(2),
            op_timeout: Duration::from_secs(5),
            write_concern: Some(
                WriteConcern::builder()
                    .w(mongodb::options::Acknowledgment::Majority)
                    .journal(true)
                    .build(),
            ),
            max_batch: 1024,
            bulk_write: true,
        }
    }
}

/// One command's commit as stored in `commits`.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct CommitDoc {
    /// The command id: the primary key makes a command commit at most once.
    #[serde(rename = "_id")]
    command_id: CommandId,
    resource_id: ResourceId,
    first_version: u64,
    last_version: u64,
    /// The node that wrote it, so a node's commit feed can tell its own commits from others'.
    node: String,
    /// Wall-clock milliseconds at the writing node (diagnostics only; ordering is by version).
    committed_at: i64,
    events: Vec<EventEnvelope>,
}

impl CommitDoc {
    fn record(&self) -> CommitRecord {
        CommitRecord {
            resource_id: self.resource_id,
            command_id: self.command_id,
            first_version: self.first_version,
            last_version: self.last_version,
        }
    }
}

/// A snapshot as stored in `resources`.
#[derive(Serialize, Deserialize)]
struct SnapshotDoc {
    #[serde(rename = "_id")]
    id: ResourceId,
    version: u64,
    state: ServerResource,
}

/// A view as stored in `read_model`; `owner` and `version` are copied out of the view to be
/// indexed and compared.
#[derive(Serialize, Deserialize)]
struct ViewDoc {
    #[serde(rename = "_id")]
    id: ResourceId,
    owner: PlayerId,
    version: u64,
    view: ClientResource,
    /// The view's regeneration carry, which the view's own serialized form leaves out (it never
    /// goes on the wire); absent in views written before it was kept.
    #[serde(default)]
    regen_carry: Option<u32>,
}

impl ViewDoc {
    fn new(view: &ClientResource) -> Self {
        Self {
            id: view.id,
            owner: view.owner.clone(),
            version: view.version,
            view: view.clone(),
            regen_carry: view.regen_carry,
        }
    }

    fn into_view(self) -> ClientResource {
        ClientResource {
            regen_carry: self.regen_carry,
            ..self.view
        }
    }
}

/// The event store and read-model store on one MongoDB database.
pub struct MongoStore {
    conn: Conn,
    /// The group-commit writer's queue ([`WRITER_QUEUE`] jobs; senders wait when it is full).
    /// Dropping the store closes it, which stops the writer.
    writer: mpsc::Sender<writer::Job>,
}

impl std::fmt::Debug for MongoStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the URI: it may hold credentials.
        f.debug_struct("MongoStore").finish_non_exhaustive()
    }
}

/// The kinds of stored document, as errors name them.
const COMMIT_DOC: &str = "commit document";
const SNAPSHOT_DOC: &str = "snapshot";
const VIEW_DOC: &str = "view";

/// A field of a stored document that is missing or not of the type Warden writes.
#[derive(Debug, thiserror::Error)]
#[error("field `{field}` is {found}")]
struct BadField {
    field: &'static str,
    found: String,
}

/// `value` (a record of kind `what`) as a BSON document.
fn to_doc<T: Serialize>(what: &'static str, value: &T) -> Result<Document, StoreError> {
    bson::to_document(value).map_err(encode(what))
}

/// A stored document of kind `what` read back.
fn from_doc<T: serde::de::DeserializeOwned>(
    what: &'static str,
    d: Document,
) -> Result<T, StoreError> {
    bson::from_document(d).map_err(corrupt(what))
}

/// A version or count as BSON Int64.
fn int64(v: u64) -> Result<Bson, StoreError> {
    i64::try_from(v)
        .map(Bson::Int64)
        .map_err(encode("a version as BSON Int64"))
}

/// A version as stored in a commit document or read from one by an aggregation (small Int64
/// values may come back from some servers as Int32).
fn version_of(d: &Document, field: &'static str) -> Result<u64, StoreError> {
    let what = COMMIT_DOC;
    match d.get(field) {
        Some(Bson::Int64(v)) => u64::try_from(*v).map_err(corrupt(what)),
        Some(Bson::Int32(v)) => u64::try_from(*v).map_err(corrupt(what)),
        other => Err(StoreError::corrupt(
            what,
            BadField {
                field,
                found: format!("{other:?}"),
            },
        )),
    }
}

/// A filter matching, for each `(resource, version)` pair, the commits of that resource whose
/// `last_version` compares to the version as `op` says (`"$gt"`, `"$eq"`). Resources that share a
/// version share one `$in` clause, so the filter has one clause per distinct version, not per
/// resource: cheap for a server that runs each `$or` clause as a scan (nx-27017 does), and each
/// clause is one index range on a real MongoDB.
fn versions_filter(pairs: &[(ResourceId, u64)], op: &str) -> Result<Document, StoreError> {
    let mut by_version: std::collections::BTreeMap<u64, Vec<Bson>> = Default::default();
    for (id, v) in pairs {
        by_version.entry(*v).or_default().push(id_str(id));
    }
    let mut clauses = by_version
        .into_iter()
        .map(|(v, ids)| {
            let version = if op == "$eq" {
                int64(v)?
            } else {
                let mut cmp = Document::new();
                cmp.insert(op, int64(v)?);
                Bson::Document(cmp)
            };
            Ok(doc! { "resource_id": { "$in": ids }, "last_version": version })
        })
        .collect::<Result<Vec<Document>, StoreError>>()?;
    Ok(if clauses.len() == 1 {
        clauses.remove(0)
    } else {
        doc! { "$or": clauses }
    })
}

fn id_str(id: impl std::fmt::Display) -> Bson {
    Bson::String(id.to_string())
}

/// A resource id stored as a string in `field` of a document of kind `what`.
fn parse_id(what: &'static str, d: &Document, field: &str) -> Result<ResourceId, StoreError> {
    let text = d.get_str(field).map_err(corrupt(what))?;
    text.parse().map(ResourceId).map_err(corrupt(what))
}

impl MongoStore {
    /// What a node runs on when this database is its backend: the log, the read model, and the
    /// feed of the commits other nodes make to it.
    pub fn backend(self: &Arc<Self>) -> Backend {
        Backend {
            events: self.clone(),
            read: self.clone(),
            feed: Some(self.clone()),
            kind: BackendKind::Mongodb,
        }
    }

    /// Connects to `uri` (database: the one the URI names, else [`DEFAULT_DATABASE`]), checks the
    /// server answers, and creates the indexes. Fails within about `server_selection_timeout` if
    /// MongoDB is unreachable. Starts the group-commit writer, so it needs a tokio runtime.
    pub async fn connect(uri: &str, config: MongoConfig) -> Result<Self, OpenError> {
        Self::connect_to(uri, None, config).await
    }

    /// Like [`connect`](Self::connect) on the database `database` (tests use one per test).
    pub async fn connect_to(
        uri: &str,
        database: Option<&str>,
        config: MongoConfig,
    ) -> Result<Self, OpenError> {
        let mut options = ClientOptions::parse(uri)
            .await
            .map_err(|e| OpenError::MongoUri(e.into()))?;
        options.app_name = Some("warden".into());
        options.server_selection_timeout = Some(config.server_selection_timeout);
        options.connect_timeout = Some(config.connect_timeout);
        // The URI's `w` / `journal` win; else acknowledged means what the config says.
        if options.write_concern.is_none() {
            options.write_concern = config.write_concern.clone();
        }
        let write_concern = options.write_concern.clone();
        let name = database
            .map(str::to_owned)
            .or_else(|| options.default_database.clone())
            .unwrap_or_else(|| DEFAULT_DATABASE.into());
        let client = Client::with_options(options).map_err(driver)?;
        let db = client.database(&name);
        let mut conn = Conn {
            commits: db.collection("commits"),
            resources: db.collection("resources"),
            views: db.collection("read_model"),
            client,
            db,
            node_id: uuid::Uuid::now_v7().to_string(),
            write_concern,
            bulk_write: false,
            counters: Arc::new(Counters::default()),
            known: Arc::new(Mutex::new(Known::default())),
            config,
        };
        let hello = conn
            .bounded(Op::Command, conn.db.run_command(doc! { "hello": 1 }))
            .await
            .map_err(|source| OpenError::MongoUnreachable {
                uri: uri.to_owned(),
                source,
            })?;
        let wire = hello.get_i32("maxWireVersion").unwrap_or(0);
        conn.bulk_write = conn.config.bulk_write && wire >= WIRE_VERSION_8_0;
        create_indexes(&conn).await?;
        let (writer, jobs) = mpsc::channel(WRITER_QUEUE);
        tokio::spawn(writer::run(conn.clone(), jobs));
        Ok(Self { conn, writer })
    }

    /// This node's id as written into its commits.
    pub fn node_id(&self) -> &str {
        &self.conn.node_id
    }

    /// The database (for tests and tools).
    pub fn database(&self) -> &Database {
        &self.conn.db
    }

    /// Operations sent to MongoDB so far, by kind.
    pub fn round_trips(&self) -> RoundTrips {
        self.conn.counters.snapshot()
    }

    /// True when snapshots and views are written with one `bulkWrite` (MongoDB 8.0+).
    pub fn uses_bulk_write(&self) -> bool {
        self.conn.bulk_write
    }

    async fn read_events(
        &self,
        id: ResourceId,
        after_version: u64,
        limit: usize,
    ) -> Result<Vec<EventEnvelope>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let filter =
            doc! { "resource_id": id_str(id), "last_version": { "$gt": int64(after_version)? } };
        let mut out = Vec::new();
        for commit in self.conn.find_commits(filter, limit).await? {
            for event in commit.events {
                if event.version > after_version && out.len() < limit {
                    out.push(event);
                }
            }
        }
        Ok(out)
    }
}

/// Why an append handed to the writer has no outcome.
const WRITER_GONE: &str = "the MongoDB writer stopped before answering";

#[async_trait]
impl EventStore for MongoStore {
    async fn append(&self, req: AppendRequest) -> Result<CommitRecord, AppendError> {
        job::submit_one(&self.writer, req, WRITER_GONE).await
    }

    /// One job for the group-commit writer: its appends are committed in order, each with its
    /// own check, and after the first that fails none of the rest is written.
    async fn append_many(
        &self,
        reqs: Vec<AppendRequest>,
    ) -> Vec<Result<CommitRecord, AppendError>> {
        job::submit(&self.writer, reqs, WRITER_GONE).await
    }

    async fn load(&self, id: ResourceId) -> Result<Loaded, StoreError> {
        let snapshot = self
            .conn
            .bounded(
                Op::Find,
                self.conn.resources.find_one(doc! { "_id": id_str(id) }),
            )
            .await?
            .map(|d| from_doc::<SnapshotDoc>(SNAPSHOT_DOC, d))
            .transpose()?
            .map(|s| s.state);
        let after = snapshot.as_ref().map_or(0, |s| s.version);
        let events = self.read_events(id, after, usize::MAX).await?;
        let head = events.last().map_or(after, |e| e.version);
        self.conn.known().note_head(id, head);
        Ok(Loaded { snapshot, events })
    }

    async fn events(
        &self,
        id: ResourceId,
        after_version: u64,
        limit: usize,
    ) -> Result<Vec<EventEnvelope>, StoreError> {
        self.read_events(id, after_version, limit).await
    }

    async fn find_command(
        &self,
        command_id: CommandId,
    ) -> Result<Option<CommitRecord>, StoreError> {
        Ok(self
            .conn
            .find_commands(&[command_id])
            .await?
            .remove(&command_id))
    }

    async fn head(&self, id: ResourceId) -> Result<u64, StoreError> {
        let found = self
            .conn
            .bounded(
                Op::Find,
                self.conn
                    .commits
                    .find_one(doc! { "resource_id": id_str(id) })
                    .sort(doc! { "last_version": -1 })
                    .projection(doc! { "last_version": 1 }),
            )
            .await?;
        let head = match found {
            None => 0,
            Some(d) => version_of(&d, "last_version")?,
        };
        self.conn.known().note_head(id, head);
        Ok(head)
    }

    async fn resource_ids(&self) -> Result<Vec<ResourceId>, StoreError> {
        let groups: Vec<Document> = self
            .conn
            .bounded(Op::Aggregate, async {
                self.conn
                    .commits
                    .aggregate([doc! { "$group": { "_id": "$resource_id" } }])
                    .await?
                    .try_collect()
                    .await
            })
            .await?;
        groups
            .iter()
            .map(|g| parse_id(COMMIT_DOC, g, "_id"))
            .collect()
    }
}

#[async_trait]
impl ReadModelStore for MongoStore {
    async fn upsert(&self, views: Vec<ClientResource>) -> Result<(), StoreError> {
        // Only the newest view of each resource in the batch needs writing, and none that this
        // store has already written (the commit path writes every view it commits).
        let mut newest: HashMap<ResourceId, ClientResource> = HashMap::new();
        {
            let known = self.conn.known();
            for view in views {
                if known.view_written(view.id, view.version) {
                    continue;
                }
                match newest.get(&view.id) {
                    Some(kept) if kept.version >= view.version => {}
                    _ => {
                        newest.insert(view.id, view);
                    }
                }
            }
        }
        if newest.is_empty() {
            return Ok(());
        }
        let views: Vec<ClientResource> = newest.into_values().collect();
        self.conn.write_newer(&[], &views).await?;
        let mut known = self.conn.known();
        for view in &views {
            known.note_view(view.id, view.version);
        }
        Ok(())
    }

    async fn get(&self, id: ResourceId) -> Result<Option<ClientResource>, StoreError> {
        let found = self
            .conn
            .bounded(
                Op::Find,
                self.conn.views.find_one(doc! { "_id": id_str(id) }),
            )
            .await?;
        Ok(found
            .map(|d| from_doc::<ViewDoc>(VIEW_DOC, d))
            .transpose()?
            .map(ViewDoc::into_view))
    }

    async fn list_by_owner(&self, owner: &PlayerId) -> Result<Vec<ClientResource>, StoreError> {
        let docs: Vec<Document> = self
            .conn
            .bounded(Op::Find, async {
                self.conn
                    .views
                    .find(doc! { "owner": owner.as_str() })
                    .sort(doc! { "_id": 1 })
                    .await?
                    .try_collect()
                    .await
            })
            .await?;
        docs.into_iter()
            .map(|d| Ok(from_doc::<ViewDoc>(VIEW_DOC, d)?.into_view()))
            .collect()
    }

    async fn clear(&self) -> Result<(), StoreError> {
        self.conn.known().views.clear();
        self.conn
            .bounded(Op::Delete, self.conn.views.delete_many(doc! {}))
            .await?;
        self.conn.known().views.clear();
        Ok(())
    }
}
