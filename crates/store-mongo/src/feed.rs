//! The MongoDB store as a [`CommitFeed`]: how a node notices what other nodes commit to the shared
//! database.
//!
//! - Commits after known versions: one `find` on `commits` per batch of resources, with one `$in`
//!   clause per distinct version (see `versions_filter`), sorted by resource, then version.
//! - Snapshots: one `find` by `_id: {$in: …}` on `resources`; owners' resources: one `find` by
//!   `owner: {$in: …}` on `read_model`, projected to `_id` and `owner`.
//! - Notices: a change stream on `commits` of the inserts whose `node` is not this store's,
//!   resumable from its resume token. Change streams need a replica set or a sharded cluster (a
//!   single-node replica set will do, as in `docker-compose.yml`; MongoDB Atlas always is one); on
//!   a standalone `mongod` or nx-27017 `watch()` fails, and the reader polls instead.
//!
//! Whether a commit is this node's own is told by the `node` field every commit carries.

use super::round_trips::Op;
use super::{
    CommitDoc, MongoStore, SNAPSHOT_DOC, SnapshotDoc, VIEW_DOC, from_doc, id_str, parse_id,
    versions_filter,
};
use crate::driver;
use async_trait::async_trait;
use futures::{StreamExt, TryStreamExt};
use mongodb::bson::{Bson, Document, doc};
use std::collections::HashMap;
use warden_core::domain::{PlayerId, ResourceId, ServerResource};
use warden_core::store::feed::{Commit, CommitFeed, Notice, Notices, ResumeToken};
use warden_core::store::{StoreError, corrupt};

impl CommitDoc {
    /// The commit as the feed shows it to a node whose id is `node`.
    fn into_commit(self, node: &str) -> Commit {
        Commit {
            resource_id: self.resource_id,
            first_version: self.first_version,
            last_version: self.last_version,
            by_this_node: self.node == node,
            events: self.events,
        }
    }
}

#[async_trait]
impl CommitFeed for MongoStore {
    async fn commits_after(
        &self,
        known: &[(ResourceId, u64)],
        limit: usize,
    ) -> Result<Vec<Commit>, StoreError> {
        if known.is_empty() {
            return Ok(Vec::new());
        }
        let mut commits = self
            .conn
            .find_commits(versions_filter(known, "$gt")?, limit)
            .await?;
        commits.sort_by_key(|c| (c.resource_id, c.last_version));
        Ok(commits
            .into_iter()
            .map(|c| c.into_commit(&self.conn.node_id))
            .collect())
    }

    async fn snapshots(
        &self,
        ids: &[ResourceId],
    ) -> Result<HashMap<ResourceId, ServerResource>, StoreError> {
        if ids.is_empty() {
            return Ok(HashMap::new());
        }
        let ids: Vec<Bson> = ids.iter().map(id_str).collect();
        let docs: Vec<Document> = self
            .conn
            .bounded(Op::Find, async {
                self.conn
                    .resources
                    .find(doc! { "_id": { "$in": ids } })
                    .await?
                    .try_collect()
                    .await
            })
            .await?;
        docs.into_iter()
            .map(|d| {
                let s = from_doc::<SnapshotDoc>(SNAPSHOT_DOC, d)?;
                Ok((s.id, s.state))
            })
            .collect()
    }

    async fn resources_of_owners(
        &self,
        owners: &[PlayerId],
    ) -> Result<HashMap<PlayerId, Vec<ResourceId>>, StoreError> {
        if owners.is_empty() {
            return Ok(HashMap::new());
        }
        let names: Vec<Bson> = owners
            .iter()
            .map(|o| Bson::String(o.as_str().into()))
            .collect();
        let docs: Vec<Document> = self
            .conn
            .bounded(Op::Find, async {
                self.conn
                    .views
                    .find(doc! { "owner": { "$in": names } })
                    .projection(doc! { "_id": 1, "owner": 1 })
                    .await?
                    .try_collect()
                    .await
            })
            .await?;
        let mut listed: HashMap<PlayerId, Vec<ResourceId>> =
            owners.iter().map(|o| (o.clone(), Vec::new())).collect();
        for d in docs {
            let id = parse_id(VIEW_DOC, &d, "_id")?;
            let owner = PlayerId::new(d.get_str("owner").map_err(corrupt(VIEW_DOC))?);
            listed.entry(owner).or_default().push(id);
        }
        Ok(listed)
    }

    async fn notices(&self, resume: Option<ResumeToken>) -> Result<Notices, StoreError> {
        use mongodb::change_stream::event::ResumeToken as MongoToken;
        let pipeline = [doc! { "$match": {
            "operationType": "insert",
            "fullDocument.node": { "$ne": &self.conn.node_id },
        } }];
        let stream = self
            .conn
            .commits
            .watch()
            .pipeline(pipeline)
            .resume_after(resume.and_then(|t| t.get::<MongoToken>().cloned()))
            .await
            .map_err(driver)?;
        // Ends after the first error: the reader opens a new stream from the last token.
        let notices = futures::stream::unfold(Some(stream), |stream| async move {
            let mut stream = stream?;
            loop {
                match stream.next().await? {
                    Err(e) => return Some((Err(driver(e)), None)),
                    Ok(event) => {
                        let resume = stream.resume_token().map(ResumeToken::new);
                        let id = event
                            .full_document
                            .as_ref()
                            .and_then(|d| d.get_str("resource_id").ok())
                            .and_then(|s| s.parse().ok())
                            .map(ResourceId);
                        // An insert without a readable resource id names nothing to look at.
                        if let Some(resource_id) = id {
                            return Some((
                                Ok(Notice {
                                    resource_id,
                                    resume,
                                }),
                                Some(stream),
                            ));
                        }
                    }
                }
            }
        });
        Ok(notices.boxed())
    }
}
