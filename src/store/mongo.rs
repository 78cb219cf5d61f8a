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
//! after a read saw the stored head equal to `e` (so a commit ending at `e` exists, or `e = 0`),
//! and it claims `first_version = e + 1`. Commits are never deleted, so that predecessor exists for
//! good. Two commits with the same predecessor claim the same `first_version`, and the unique index
//! lets only one of them in. So every commit has exactly one predecessor and at most one
//! successor: starting from version 0 the commits form a single chain whose version ranges are
//! contiguous and disjoint — every (resource id, version) appears once, with no gap. The read and
//! the insert need no transaction between them: whatever happens in between, the index decides.
//!
//! **Types.** Versions, amounts and timestamps are BSON Int64 (timestamps as milliseconds, not
//! BSON dates, because whole-number milliseconds are what the domain uses). UUIDs are stored as
//! their canonical strings: the same text as in logs, the wire protocol and a `mongosh` query, v7
//! strings sort by time just as the bytes do, and serde writes them without custom code. Documents
//! are always written whole (insert or replace), never patched with `$set`.
//!
//! **Failure.** Every operation is bounded by [`MongoConfig::op_timeout`] and server selection by
//! [`MongoConfig::server_selection_timeout`]: a lost MongoDB turns into [`StoreError::Unavailable`]
//! within seconds, and the driver reconnects by itself when it returns. An insert whose reply is
//! lost is an error to the caller (never a success); its retry with the same command id finds the
//! first commit by `_id` and is answered as a duplicate.

use crate::domain::{
    ClientResource, CommandId, EventEnvelope, PlayerId, ResourceId, ServerResource,
};
use crate::store::{
    AppendError, AppendRequest, CommitRecord, EventStore, Loaded, ReadModelStore, StoreError,
};
use async_trait::async_trait;
use futures::{StreamExt, TryStreamExt};
use mongodb::bson::{self, Bson, Document, doc};
use mongodb::error::{ErrorKind, WriteFailure};
use mongodb::options::{ClientOptions, IndexOptions, WriteConcern};
use mongodb::{Client, Collection, Database, IndexModel};
use serde::{Deserialize, Serialize};
use std::future::IntoFuture;
use std::time::Duration;

/// MongoDB's error code for a unique-index violation.
const DUPLICATE_KEY: i32 = 11000;
/// The database used when the URI names none.
pub const DEFAULT_DATABASE: &str = "warden";
/// Read-model writes of one `upsert` call in flight at once.
const UPSERT_CONCURRENCY: usize = 16;

/// A snapshot is written when an append takes a resource's version across a multiple of this.
const SNAPSHOT_EVERY: u64 = 64;

/// Connection tunables, with defaults chosen so a lost MongoDB fails commands fast.
#[derive(Clone, Debug)]
pub struct MongoConfig {
    /// How long an operation waits for a usable server before failing (driver default: 30 s).
    pub server_selection_timeout: Duration,
    /// TCP connect and handshake timeout of one connection.
    pub connect_timeout: Duration,
    /// Upper bound of any single store operation, including retries inside the driver.
    pub op_timeout: Duration,
}

impl Default for MongoConfig {
    fn default() -> Self {
        Self {
            server_selection_timeout: Duration::from_secs(2),
            connect_timeout: Duration::from_secs(2),
            op_timeout: Duration::from_secs(5),
        }
    }
}

/// One command's commit as stored in `commits`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CommitDoc {
    /// The command id: the primary key makes a command commit at most once.
    #[serde(rename = "_id")]
    pub command_id: CommandId,
    pub resource_id: ResourceId,
    pub first_version: u64,
    pub last_version: u64,
    /// The node that wrote it, so a node's relay can skip its own commits.
    pub node: String,
    /// Wall-clock milliseconds at the writing node (diagnostics only; ordering is by version).
    pub committed_at: i64,
    pub events: Vec<EventEnvelope>,
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
}

/// The event store and read-model store on one MongoDB database.
pub struct MongoStore {
    /// Kept for `drop_database` in tests and for change streams.
    db: Database,
    commits: Collection<Document>,
    resources: Collection<Document>,
    views: Collection<Document>,
    /// This node's id, written into every commit it makes.
    node_id: String,
    config: MongoConfig,
}

fn unavailable(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

fn corrupt(e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(e.to_string())
}

fn to_doc<T: Serialize>(value: &T) -> Result<Document, StoreError> {
    bson::to_document(value).map_err(corrupt)
}

fn from_doc<T: serde::de::DeserializeOwned>(d: Document) -> Result<T, StoreError> {
    bson::from_document(d).map_err(corrupt)
}

/// A version or count as BSON Int64.
fn int64(v: u64) -> Result<Bson, StoreError> {
    i64::try_from(v)
        .map(Bson::Int64)
        .map_err(|_| corrupt(format!("{v} does not fit a BSON Int64")))
}

fn id_str(id: impl std::fmt::Display) -> Bson {
    Bson::String(id.to_string())
}

/// True for a unique-index violation, however the driver wraps it.
fn is_duplicate_key(e: &mongodb::error::Error) -> bool {
    match e.kind.as_ref() {
        ErrorKind::Write(WriteFailure::WriteError(w)) => w.code == DUPLICATE_KEY,
        ErrorKind::Command(c) => c.code == DUPLICATE_KEY,
        ErrorKind::InsertMany(m) => m
            .write_errors
            .as_ref()
            .is_some_and(|es| es.iter().any(|w| w.code == DUPLICATE_KEY)),
        _ => false,
    }
}

impl MongoStore {
    /// Connects to `uri` (database: the one the URI names, else [`DEFAULT_DATABASE`]), checks the
    /// server answers, and creates the indexes. Fails within about `server_selection_timeout` if
    /// MongoDB is unreachable.
    pub async fn connect(uri: &str, config: MongoConfig) -> Result<Self, StoreError> {
        Self::connect_to(uri, None, config).await
    }

    /// Like [`connect`](Self::connect) on the database `database` (tests use one per test).
    pub async fn connect_to(
        uri: &str,
        database: Option<&str>,
        config: MongoConfig,
    ) -> Result<Self, StoreError> {
        let mut options = ClientOptions::parse(uri)
            .await
            .map_err(|e| unavailable(format!("bad MongoDB URI: {e}")))?;
        options.app_name = Some("warden".into());
        options.server_selection_timeout = Some(config.server_selection_timeout);
        options.connect_timeout = Some(config.connect_timeout);
        // Acknowledged means durable: a commit is acknowledged once a majority has journaled it.
        options.write_concern = Some(
            WriteConcern::builder()
                .w(mongodb::options::Acknowledgment::Majority)
                .journal(true)
                .build(),
        );
        let name = database
            .map(str::to_owned)
            .or_else(|| options.default_database.clone())
            .unwrap_or_else(|| DEFAULT_DATABASE.into());
        let client = Client::with_options(options).map_err(unavailable)?;
        let db = client.database(&name);
        let store = Self {
            commits: db.collection("commits"),
            resources: db.collection("resources"),
            views: db.collection("read_model"),
            db,
            node_id: uuid::Uuid::now_v7().to_string(),
            config,
        };
        store
            .bounded(store.db.run_command(doc! { "ping": 1 }))
            .await
            .map_err(|e| unavailable(format!("MongoDB at {uri} is unreachable: {e}")))?;
        store.create_indexes().await?;
        Ok(store)
    }

    async fn create_indexes(&self) -> Result<(), StoreError> {
        let unique = |name: &str| {
            IndexOptions::builder()
                .unique(true)
                .name(name.to_owned())
                .build()
        };
        let commit_indexes = [
            // The concurrency gate: one commit per (resource, first version).
            IndexModel::builder()
                .keys(doc! { "resource_id": 1, "first_version": 1 })
                .options(unique("resource_first_version"))
                .build(),
            // Head lookups and log reads by version; unique as a consequence of the gate.
            IndexModel::builder()
                .keys(doc! { "resource_id": 1, "last_version": 1 })
                .options(unique("resource_last_version"))
                .build(),
        ];
        for index in commit_indexes {
            self.bounded(self.commits.create_index(index)).await?;
        }
        let by_owner = IndexModel::builder()
            .keys(doc! { "owner": 1 })
            .options(IndexOptions::builder().name("owner".to_owned()).build())
            .build();
        self.bounded(self.views.create_index(by_owner)).await?;
        Ok(())
    }

    /// This node's id as written into its commits.
    pub fn node_id(&self) -> &str {
        &self.node_id
    }

    /// The database (for change streams and tests).
    pub fn database(&self) -> &Database {
        &self.db
    }

    /// The `commits` collection (for change streams).
    pub fn commits_collection(&self) -> &Collection<Document> {
        &self.commits
    }

    /// Runs a driver operation with the store's time bound; every failure is `Unavailable`.
    async fn bounded<T>(
        &self,
        op: impl IntoFuture<Output = mongodb::error::Result<T>>,
    ) -> Result<T, StoreError> {
        self.bounded_raw(op).await?.map_err(unavailable)
    }

    /// Like [`bounded`](Self::bounded) but hands the driver's error back for inspection.
    async fn bounded_raw<T>(
        &self,
        op: impl IntoFuture<Output = mongodb::error::Result<T>>,
    ) -> Result<mongodb::error::Result<T>, StoreError> {
        tokio::time::timeout(self.config.op_timeout, op.into_future())
            .await
            .map_err(|_| {
                unavailable(format!(
                    "MongoDB did not answer within {:?}",
                    self.config.op_timeout
                ))
            })
    }

    /// Commits of `id` whose last version is after `after`, in version order, at most `limit`.
    pub async fn commits_after(
        &self,
        id: ResourceId,
        after: u64,
        limit: usize,
    ) -> Result<Vec<CommitDoc>, StoreError> {
        let filter = doc! { "resource_id": id_str(id), "last_version": { "$gt": int64(after)? } };
        self.find_commits(filter, limit).await
    }

    /// Commits after a known version for each of several resources, in one query: ordered by
    /// resource, then version. At most `limit` documents.
    pub async fn commits_after_many(
        &self,
        known: &[(ResourceId, u64)],
        limit: usize,
    ) -> Result<Vec<CommitDoc>, StoreError> {
        if known.is_empty() {
            return Ok(Vec::new());
        }
        let clauses = known
            .iter()
            .map(|(id, after)| {
                Ok(Bson::Document(doc! {
                    "resource_id": id_str(id),
                    "last_version": { "$gt": int64(*after)? },
                }))
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        let mut commits = self.find_commits(doc! { "$or": clauses }, limit).await?;
        commits.sort_by_key(|c| (c.resource_id, c.last_version));
        Ok(commits)
    }

    /// The latest commit of `id`, if any.
    pub async fn last_commit(&self, id: ResourceId) -> Result<Option<CommitDoc>, StoreError> {
        let found = self
            .bounded(
                self.commits
                    .find_one(doc! { "resource_id": id_str(id) })
                    .sort(doc! { "last_version": -1 }),
            )
            .await?;
        found.map(from_doc).transpose()
    }

    async fn find_commits(
        &self,
        filter: Document,
        limit: usize,
    ) -> Result<Vec<CommitDoc>, StoreError> {
        // Each commit holds at least one event, so `limit` commits are always enough.
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let docs: Vec<Document> = self
            .bounded(async {
                self.commits
                    .find(filter)
                    .sort(doc! { "resource_id": 1, "last_version": 1 })
                    .limit(limit)
                    .await?
                    .try_collect()
                    .await
            })
            .await?;
        docs.into_iter().map(from_doc).collect()
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
        let mut out = Vec::new();
        for commit in self.commits_after(id, after_version, limit).await? {
            for event in commit.events {
                if event.version > after_version && out.len() < limit {
                    out.push(event);
                }
            }
        }
        Ok(out)
    }

    /// Writes the snapshot unless the stored one is as new or newer.
    async fn put_snapshot(&self, state: &ServerResource) -> Result<(), StoreError> {
        let doc = to_doc(&SnapshotDoc {
            id: state.id,
            version: state.version,
            state: state.clone(),
        })?;
        self.put_newer(&self.resources, doc, state.version).await
    }

    /// Stores `doc` (which has `_id` and `version`) unless a document with the same `_id` and
    /// the same or a higher version is there. Two steps instead of one upserting replace: replace
    /// an older one; if there was none, insert; if the insert meets a document that appeared in
    /// between, try the replace once more (documents are only ever replaced by newer ones, so if
    /// it still matches nothing, what is there is as new or newer). This way the outcome never
    /// depends on how a server reports an upsert that collides with an existing `_id`.
    async fn put_newer(
        &self,
        collection: &Collection<Document>,
        doc: Document,
        version: u64,
    ) -> Result<(), StoreError> {
        let id = doc
            .get("_id")
            .cloned()
            .ok_or_else(|| corrupt("document without _id"))?;
        let filter = doc! { "_id": id, "version": { "$lt": int64(version)? } };
        let mut replacement = doc.clone();
        replacement.remove("_id");
        let replaced = self
            .bounded(collection.replace_one(filter.clone(), replacement.clone()))
            .await?;
        if replaced.matched_count > 0 {
            return Ok(());
        }
        match self.bounded_raw(collection.insert_one(&doc)).await? {
            Ok(_) => Ok(()),
            Err(e) if is_duplicate_key(&e) => {
                self.bounded(collection.replace_one(filter, replacement))
                    .await?;
                Ok(())
            }
            Err(e) => Err(unavailable(e)),
        }
    }
}

#[async_trait]
impl EventStore for MongoStore {
    async fn append(&self, req: AppendRequest) -> Result<CommitRecord, AppendError> {
        req.validate()?;
        let Some(last) = req.events.last() else {
            return Err(StoreError::Corrupt("empty append".into()).into());
        };
        let record = CommitRecord {
            resource_id: req.resource_id,
            command_id: req.command_id,
            first_version: req.expected_version + 1,
            last_version: last.version,
        };
        // The head check: a commit ending at the expected version must exist (see the module
        // doc). A command already committed is a duplicate whatever the head.
        let head = self.head(req.resource_id).await?;
        if head != req.expected_version {
            if let Some(original) = self.find_command(req.command_id).await? {
                return Err(AppendError::Duplicate(original));
            }
            return Err(AppendError::Conflict {
                expected: req.expected_version,
                actual: head,
            });
        }
        let commit = CommitDoc {
            command_id: req.command_id,
            resource_id: req.resource_id,
            first_version: record.first_version,
            last_version: record.last_version,
            node: self.node_id.clone(),
            committed_at: crate::clock::Clock::now(&crate::clock::SystemClock).millis(),
            events: req.events,
        };
        match self
            .bounded_raw(self.commits.insert_one(to_doc(&commit)?))
            .await?
        {
            Ok(_) => {}
            Err(e) if is_duplicate_key(&e) => {
                // Either this command id is taken (a repeat) or another writer claimed the version.
                if let Some(original) = self.find_command(req.command_id).await? {
                    return Err(AppendError::Duplicate(original));
                }
                return Err(AppendError::Conflict {
                    expected: req.expected_version,
                    actual: self.head(req.resource_id).await?,
                });
            }
            // Includes a lost reply: the insert may or may not have happened, so it is an error,
            // and a retry with the same command id will find it.
            Err(e) => return Err(unavailable(e).into()),
        }
        // The commit is durable; the snapshot (a shortcut for loading, written when the version
        // crosses a multiple of SNAPSHOT_EVERY) and the view follow it. Failing to write them
        // must not turn a success into an error: loading reads the log past the snapshot, and
        // the relay's catch-up at start repairs a view that a crash left behind.
        let state = &req.state;
        if state.version / SNAPSHOT_EVERY > req.expected_version / SNAPSHOT_EVERY {
            if let Err(e) = self.put_snapshot(state).await {
                tracing::warn!(resource = %req.resource_id, error = %e, "snapshot not written");
            }
        }
        if let Err(e) = self.upsert(vec![ClientResource::from_server(state)]).await {
            tracing::warn!(resource = %req.resource_id, error = %e, "view not written");
        }
        Ok(record)
    }

    async fn load(&self, id: ResourceId) -> Result<Loaded, StoreError> {
        let snapshot = self
            .bounded(self.resources.find_one(doc! { "_id": id_str(id) }))
            .await?
            .map(from_doc::<SnapshotDoc>)
            .transpose()?
            .map(|s| s.state);
        let after = snapshot.as_ref().map_or(0, |s| s.version);
        let events = self.read_events(id, after, usize::MAX).await?;
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
        let found = self
            .bounded(
                self.commits
                    .find_one(doc! { "_id": id_str(command_id) })
                    .projection(doc! { "events": 0 }),
            )
            .await?;
        match found {
            Some(mut d) => {
                d.insert("events", Bson::Array(Vec::new()));
                Ok(Some(from_doc::<CommitDoc>(d)?.record()))
            }
            None => Ok(None),
        }
    }

    async fn head(&self, id: ResourceId) -> Result<u64, StoreError> {
        let found = self
            .bounded(
                self.commits
                    .find_one(doc! { "resource_id": id_str(id) })
                    .sort(doc! { "last_version": -1 })
                    .projection(doc! { "last_version": 1 }),
            )
            .await?;
        match found {
            None => Ok(0),
            Some(d) => match d.get("last_version") {
                Some(Bson::Int64(v)) => u64::try_from(*v).map_err(corrupt),
                Some(Bson::Int32(v)) => u64::try_from(*v).map_err(corrupt),
                other => Err(corrupt(format!("commit without a last_version: {other:?}"))),
            },
        }
    }

    async fn resource_ids(&self) -> Result<Vec<ResourceId>, StoreError> {
        let groups: Vec<Document> = self
            .bounded(async {
                self.commits
                    .aggregate([doc! { "$group": { "_id": "$resource_id" } }])
                    .await?
                    .try_collect()
                    .await
            })
            .await?;
        groups
            .into_iter()
            .map(|g| {
                let id = g.get_str("_id").map_err(corrupt)?;
                id.parse().map(ResourceId).map_err(corrupt)
            })
            .collect()
    }
}

#[async_trait]
impl ReadModelStore for MongoStore {
    async fn upsert(&self, views: Vec<ClientResource>) -> Result<(), StoreError> {
        // Only the newest view of each resource in the batch needs writing.
        let mut newest: std::collections::HashMap<ResourceId, ClientResource> =
            std::collections::HashMap::new();
        for view in views {
            match newest.get(&view.id) {
                Some(kept) if kept.version >= view.version => {}
                _ => {
                    newest.insert(view.id, view);
                }
            }
        }
        let writes = newest.into_values().map(|view| async move {
            let version = view.version;
            let doc = to_doc(&ViewDoc {
                id: view.id,
                owner: view.owner.clone(),
                version,
                view,
            })?;
            self.put_newer(&self.views, doc, version).await
        });
        futures::stream::iter(writes)
            .buffer_unordered(UPSERT_CONCURRENCY)
            .try_collect::<Vec<()>>()
            .await?;
        Ok(())
    }

    async fn get(&self, id: ResourceId) -> Result<Option<ClientResource>, StoreError> {
        let found = self
            .bounded(self.views.find_one(doc! { "_id": id_str(id) }))
            .await?;
        Ok(found.map(from_doc::<ViewDoc>).transpose()?.map(|d| d.view))
    }

    async fn list_by_owner(&self, owner: &PlayerId) -> Result<Vec<ClientResource>, StoreError> {
        let docs: Vec<Document> = self
            .bounded(async {
                self.views
                    .find(doc! { "owner": owner.as_str() })
                    .sort(doc! { "_id": 1 })
                    .await?
                    .try_collect()
                    .await
            })
            .await?;
        docs.into_iter()
            .map(|d| Ok(from_doc::<ViewDoc>(d)?.view))
            .collect()
    }

    async fn clear(&self) -> Result<(), StoreError> {
        self.bounded(self.views.delete_many(doc! {})).await?;
        Ok(())
    }
}
