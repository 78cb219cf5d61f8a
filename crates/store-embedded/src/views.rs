//! The read model: views committed since the last checkpoint are kept in memory, where reads look
//! first; the writer's view checkpoint stores them in `views` once per resource.

use super::*;

/// A committed view the writer has not stored in `views` yet.
#[derive(Debug)]
pub(crate) enum Fresh {
    /// The view as of the resource's last commit.
    View(ClientResource),
    /// Found in `stale_views` when the store was opened (the process stopped before its view
    /// checkpoint): the stored view may be behind the log, so a read builds it from the log.
    Stale,
}

/// Views committed since the last view checkpoint, by resource: readers look here before `views`.
/// Only the writer adds to it or clears it.
pub(crate) type FreshViews = Arc<DashMap<ResourceId, Fresh, foldhash::fast::RandomState>>;

impl GroupCommit {
    /// Stores every view waiting in memory in `views` and removes the `stale_views` records
    /// that listed them, in one synced batch; then forgets them (readers find them in `views`).
    /// On failure all stay where they are (readers are still served from memory and the log)
    /// and the next checkpoint tries again.
    pub(crate) fn checkpoint_views(&mut self) {
        self.last_checkpoint = Instant::now();
        if self.fresh.is_empty() && self.stale.is_empty() {
            return;
        }
        let started = Instant::now();
        match self.store_fresh_views() {
            Ok(views) => tracing::debug!(
                views,
                took_us = started.elapsed().as_micros() as u64,
                "view checkpoint"
            ),
            Err(e) => {
                tracing::error!(error = %e, "view checkpoint failed; the views stay in memory");
                return;
            }
        }
        self.fresh.clear();
        self.stale.start = self.stale.end;
    }

    /// Returns how many views it stored.
    pub(crate) fn store_fresh_views(&self) -> Result<usize, StoreError> {
        let mut views = Vec::with_capacity(self.fresh.len());
        for entry in self.fresh.iter() {
            let id = *entry.key();
            let view = match entry.value() {
                Fresh::View(view) => encode_view(view)?,
                Fresh::Stale => match stored_load(&self.ks, id)?.state() {
                    Some(state) => encode_view(&ClientResource::from_server(&state))?,
                    None => continue,
                },
            };
            views.push((resource_key(id), view));
        }
        // In key order: each insert lands next to the previous one in the memtable.
        views.sort_unstable_by_key(|a| a.0);
        let stored = views.len();
        let mut write = self.db.batch().durability(Some(PersistMode::SyncData));
        for (key, view) in views {
            write.insert(&self.ks.views, key, view);
        }
        for seq in self.stale.clone() {
            write.remove(&self.ks.stale_views, seq.to_be_bytes());
        }
        write.commit().map_err(engine)?;
        Ok(stored)
    }
}

#[async_trait]
impl ReadModelStore for EmbeddedStore {
    /// Writes views outside the group commit (rebuilds and tools; the writer keeps views current
    /// itself). Run a rebuild while no commands are served.
    async fn upsert(&self, views: Vec<ClientResource>) -> Result<(), StoreError> {
        let mut write = self.db.batch().durability(Some(PersistMode::SyncData));
        let mut replaced = Vec::new();
        for view in &views {
            let key = resource_key(view.id);
            let stored = match self.ks.views.get(key).map_err(engine)? {
                Some(bytes) => Some(decode_view(&bytes)?),
                None => None,
            };
            let current = if self.fresh.contains_key(&view.id) {
                self.get(view.id).await?
            } else {
                stored.clone()
            };
            if current.as_ref().is_some_and(|s| s.version >= view.version) {
                continue;
            }
            write.insert(&self.ks.views, key, encode_view(view)?);
            if stored.is_none() {
                write.insert(&self.ks.by_owner, owner_key(&view.owner, view.id), []);
            }
            replaced.push((view.id, view.version));
        }
        write.commit().map_err(engine)?;
        // `views` now holds something newer than what waited in memory (unless the writer has
        // committed a newer one since).
        for (id, version) in replaced {
            self.fresh.remove_if(&id, |_, fresh| match fresh {
                Fresh::View(waiting) => waiting.version <= version,
                Fresh::Stale => true,
            });
        }
        Ok(())
    }

    /// The view committed last: from memory if the writer has not stored it yet (built from the
    /// log if a crash left it behind), else from `views`.
    async fn get(&self, id: ResourceId) -> Result<Option<ClientResource>, StoreError> {
        if let Some(fresh) = self.fresh.get(&id) {
            match fresh.value() {
                Fresh::View(view) => return Ok(Some(view.clone())),
                Fresh::Stale => {
                    drop(fresh);
                    let state = stored_load(&self.ks, id)?.state();
                    return Ok(state.as_ref().map(ClientResource::from_server));
                }
            }
        }
        match self.ks.views.get(resource_key(id)).map_err(engine)? {
            Some(bytes) => Ok(Some(decode_view(&bytes)?)),
            None => Ok(None),
        }
    }

    async fn list_by_owner(&self, owner: &PlayerId) -> Result<Vec<ClientResource>, StoreError> {
        let mut prefix = owner.as_str().as_bytes().to_vec();
        prefix.push(0);
        let mut out = Vec::new();
        for row in self.ks.by_owner.prefix(&prefix) {
            let key = row.key().map_err(engine)?;
            let id =
                uuid::Uuid::from_slice(&key[prefix.len()..]).map_err(corrupt("owner index key"))?;
            if let Some(view) = self.get(ResourceId(id)).await? {
                out.push(view);
            }
        }
        Ok(out)
    }

    async fn clear(&self) -> Result<(), StoreError> {
        for ks in [&self.ks.views, &self.ks.by_owner] {
            ks.clear().map_err(engine)?;
        }
        self.fresh.clear();
        Ok(())
    }
}
