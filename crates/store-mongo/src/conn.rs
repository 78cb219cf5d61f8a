//! The MongoDB connection the store and its writer task share: the collections, what the store
//! has learnt (known boundaries and written views), and the batched operations both use, each
//! bounded in time and counted.

use super::CommitDoc;
use super::round_trips::{Counters, Op};
use super::{
    COMMIT_DOC, DUPLICATE_KEY, KNOWN_CAP, MongoConfig, SNAPSHOT_DOC, SnapshotDoc, VIEW_DOC,
    ViewDoc, from_doc, id_str, int64, parse_id, to_doc, version_of, versions_filter,
};
use crate::driver;
use futures::TryStreamExt;
use mongodb::bson::{Bson, Document, doc};
use mongodb::error::ErrorKind;
use mongodb::options::{IndexOptions, ReplaceOneModel, WriteConcern, WriteModel};
use mongodb::{Client, Collection, Database, IndexModel};
use std::collections::HashMap;
use std::future::IntoFuture;
use std::sync::{Arc, Mutex};
use warden_core::domain::{ClientResource, CommandId, ResourceId, ServerResource};
use warden_core::store::{CommitRecord, StoreError};

/// What this store has learnt and may rely on without asking MongoDB again.
#[derive(Debug, Default)]
pub(super) struct Known {
    /// Resource → the newest version known to be the last version of a stored commit (a
    /// boundary; see the module doc). An append expecting it needs no check before its insert.
    pub(super) heads: HashMap<ResourceId, u64>,
    /// Resource → the newest view version this store has written (the stored view is at least
    /// that new, since views are only ever replaced by newer ones).
    pub(super) views: HashMap<ResourceId, u64>,
}

impl Known {
    pub(super) fn note_head(&mut self, id: ResourceId, version: u64) {
        if self.heads.len() >= KNOWN_CAP {
            self.heads.clear();
        }
        let known = self.heads.entry(id).or_insert(0);
        *known = (*known).max(version);
    }

    pub(super) fn is_boundary(&self, id: ResourceId, version: u64) -> bool {
        version == 0 || self.heads.get(&id) == Some(&version)
    }

    pub(super) fn note_view(&mut self, id: ResourceId, version: u64) {
        if self.views.len() >= KNOWN_CAP {
            self.views.clear();
        }
        let known = self.views.entry(id).or_insert(0);
        *known = (*known).max(version);
    }

    pub(super) fn view_written(&self, id: ResourceId, version: u64) -> bool {
        self.views.get(&id).is_some_and(|w| *w >= version)
    }
}

/// The connection and collections, shared by the store and its writer task (cheap to clone).
#[derive(Clone)]
pub(super) struct Conn {
    pub(super) client: Client,
    pub(super) db: Database,
    pub(super) commits: Collection<Document>,
    pub(super) resources: Collection<Document>,
    pub(super) views: Collection<Document>,
    /// This node's id, written into every commit it makes.
    pub(super) node_id: String,
    pub(super) config: MongoConfig,
    /// The write concern sent with raw `update` commands (the driver adds it to the others).
    pub(super) write_concern: Option<WriteConcern>,
    /// True when snapshots and views go in one `bulkWrite` (MongoDB 8.0+ and allowed by config).
    pub(super) bulk_write: bool,
    pub(super) counters: Arc<Counters>,
    pub(super) known: Arc<Mutex<Known>>,
}

impl Conn {
    /// Runs a driver operation with the store's time bound.
    pub(super) async fn bounded<T>(
        &self,
        op: Op,
        fut: impl IntoFuture<Output = mongodb::error::Result<T>>,
    ) -> Result<T, StoreError> {
        self.bounded_raw(op, fut).await?.map_err(driver)
    }

    /// Like [`bounded`](Self::bounded) but hands the driver's error back for inspection.
    pub(super) async fn bounded_raw<T>(
        &self,
        op: Op,
        fut: impl IntoFuture<Output = mongodb::error::Result<T>>,
    ) -> Result<mongodb::error::Result<T>, StoreError> {
        self.counters.count(op);
        tokio::time::timeout(self.config.op_timeout, fut.into_future())
            .await
            .map_err(|_| StoreError::Timeout {
                store: "MongoDB",
                after: self.config.op_timeout,
            })
    }

    pub(super) fn known(&self) -> std::sync::MutexGuard<'_, Known> {
        // A panic while holding this lock leaves nothing half-done (each update is one insert).
        self.known.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) async fn find_commits(
        &self,
        filter: Document,
        limit: usize,
    ) -> Result<Vec<CommitDoc>, StoreError> {
        // Each commit holds at least one event, so `limit` commits are always enough.
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let docs: Vec<Document> = self
            .bounded(Op::Find, async {
                self.commits
                    .find(filter)
                    .sort(doc! { "resource_id": 1, "last_version": 1 })
                    .limit(limit)
                    .await?
                    .try_collect()
                    .await
            })
            .await?;
        docs.into_iter().map(|d| from_doc(COMMIT_DOC, d)).collect()
    }

    /// The commit records of those of `command_ids` that were committed, in one query.
    pub(super) async fn find_commands(
        &self,
        command_ids: &[CommandId],
    ) -> Result<HashMap<CommandId, CommitRecord>, StoreError> {
        if command_ids.is_empty() {
            return Ok(HashMap::new());
        }
        let ids: Vec<Bson> = command_ids.iter().map(id_str).collect();
        let docs: Vec<Document> = self
            .bounded(Op::Find, async {
                self.commits
                    .find(doc! { "_id": { "$in": ids } })
                    .projection(doc! { "events": 0 })
                    .await?
                    .try_collect()
                    .await
            })
            .await?;
        docs.into_iter()
            .map(|mut d| {
                d.insert("events", Bson::Array(Vec::new()));
                let record = from_doc::<CommitDoc>(COMMIT_DOC, d)?.record();
                Ok((record.command_id, record))
            })
            .collect()
    }

    /// The heads of several resources in one aggregation (a resource without commits is absent).
    pub(super) async fn heads(
        &self,
        ids: &[ResourceId],
    ) -> Result<HashMap<ResourceId, u64>, StoreError> {
        if ids.is_empty() {
            return Ok(HashMap::new());
        }
        let ids: Vec<Bson> = ids.iter().map(id_str).collect();
        let groups: Vec<Document> = self
            .bounded(Op::Aggregate, async {
                self.commits
                    .aggregate([
                        doc! { "$match": { "resource_id": { "$in": ids } } },
                        doc! { "$group": { "_id": "$resource_id", "head": { "$max": "$last_version" } } },
                    ])
                    .await?
                    .try_collect()
                    .await
            })
            .await?;
        let heads = groups
            .iter()
            .map(|g| Ok((parse_id(COMMIT_DOC, g, "_id")?, version_of(g, "head")?)))
            .collect::<Result<HashMap<_, _>, StoreError>>()?;
        let mut known = self.known();
        for (id, head) in &heads {
            known.note_head(*id, *head);
        }
        Ok(heads)
    }

    /// Which of `(resource, version)` pairs are boundaries (a stored commit ends there), in one
    /// query.
    pub(super) async fn boundaries(
        &self,
        pairs: &[(ResourceId, u64)],
    ) -> Result<Vec<(ResourceId, u64)>, StoreError> {
        if pairs.is_empty() {
            return Ok(Vec::new());
        }
        let filter = versions_filter(pairs, "$eq")?;
        let docs: Vec<Document> = self
            .bounded(Op::Find, async {
                self.commits
                    .find(filter)
                    .projection(doc! { "resource_id": 1, "last_version": 1 })
                    .await?
                    .try_collect()
                    .await
            })
            .await?;
        let found = docs
            .iter()
            .map(|d| {
                Ok((
                    parse_id(COMMIT_DOC, d, "resource_id")?,
                    version_of(d, "last_version")?,
                ))
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        let mut known = self.known();
        for (id, v) in &found {
            known.note_head(*id, *v);
        }
        Ok(found)
    }

    /// Stores each snapshot and view unless one of the same resource at the same or a newer
    /// version is there: one `bulkWrite` for both collections when the server has it, else one
    /// `update` command per collection (sent together). Each write is a replace filtered on
    /// `version < new` with upsert; when a document as new or newer is there the upsert collides
    /// with its `_id` (duplicate key), which here means "nothing to do".
    pub(super) async fn write_newer(
        &self,
        snapshots: &[ServerResource],
        views: &[ClientResource],
    ) -> Result<(), StoreError> {
        let mut snapshot_writes = Vec::with_capacity(snapshots.len());
        for state in snapshots {
            let doc = to_doc(
                SNAPSHOT_DOC,
                &SnapshotDoc {
                    id: state.id,
                    version: state.version,
                    state: state.clone(),
                },
            )?;
            snapshot_writes.push((state.id, state.version, doc));
        }
        let mut view_writes = Vec::with_capacity(views.len());
        for view in views {
            let doc = to_doc(VIEW_DOC, &ViewDoc::new(view))?;
            view_writes.push((view.id, view.version, doc));
        }
        if self.bulk_write {
            let mut models: Vec<WriteModel> = Vec::new();
            for (collection, writes) in [
                (&self.resources, snapshot_writes),
                (&self.views, view_writes),
            ] {
                for (id, version, doc) in writes {
                    models.push(
                        ReplaceOneModel::builder()
                            .namespace(collection.namespace())
                            .filter(
                                doc! { "_id": id_str(id), "version": { "$lt": int64(version)? } },
                            )
                            .replacement(doc)
                            .upsert(true)
                            .build()
                            .into(),
                    );
                }
            }
            if models.is_empty() {
                return Ok(());
            }
            return match self
                .bounded_raw(Op::BulkWrite, self.client.bulk_write(models).ordered(false))
                .await?
            {
                Ok(_) => Ok(()),
                Err(e) => match e.kind.as_ref() {
                    ErrorKind::BulkWrite(b)
                        if b.write_concern_errors.is_empty()
                            && b.write_errors.values().all(|w| w.code == DUPLICATE_KEY) =>
                    {
                        Ok(())
                    }
                    _ => Err(driver(e)),
                },
            };
        }
        let (a, b) = futures::join!(
            self.update_newer(&self.resources, snapshot_writes),
            self.update_newer(&self.views, view_writes)
        );
        a.and(b)
    }

    /// [`write_newer`](Self::write_newer) for one collection with one raw `update` command.
    pub(super) async fn update_newer(
        &self,
        collection: &Collection<Document>,
        writes: Vec<(ResourceId, u64, Document)>,
    ) -> Result<(), StoreError> {
        if writes.is_empty() {
            return Ok(());
        }
        let mut updates = Vec::with_capacity(writes.len());
        for (id, version, doc) in writes {
            updates.push(Bson::Document(doc! {
                "q": { "_id": id_str(id), "version": { "$lt": int64(version)? } },
                "u": doc,
                "upsert": true,
            }));
        }
        let mut command =
            doc! { "update": collection.name(), "updates": updates, "ordered": false };
        if let Some(wc) = &self.write_concern {
            command.insert("writeConcern", to_doc("write concern", wc)?);
        }
        let reply = self
            .bounded(Op::Update, self.db.run_command(command))
            .await?;
        if let Ok(errors) = reply.get_array("writeErrors") {
            let only_newer_there = errors.iter().all(|e| {
                e.as_document()
                    .and_then(|d| d.get("code"))
                    .and_then(Bson::as_i32)
                    == Some(DUPLICATE_KEY)
            });
            if !only_newer_there {
                return Err(StoreError::WriteFailed {
                    store: "MongoDB",
                    detail: format!("update failed: {errors:?}"),
                });
            }
        }
        if let Ok(e) = reply.get_document("writeConcernError") {
            return Err(StoreError::WriteFailed {
                store: "MongoDB",
                detail: format!("write concern failed: {e}"),
            });
        }
        Ok(())
    }
}

pub(super) async fn create_indexes(conn: &Conn) -> Result<(), StoreError> {
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
        conn.bounded(Op::Command, conn.commits.create_index(index))
            .await?;
    }
    let by_owner = IndexModel::builder()
        .keys(doc! { "owner": 1 })
        .options(IndexOptions::builder().name("owner".to_owned()).build())
        .build();
    conn.bounded(Op::Command, conn.views.create_index(by_owner))
        .await?;
    Ok(())
}
