//! The group-commit writer thread: takes every append waiting, checks each against the heads and
//! command ids, writes what passes in one atomic batch with one fsync, then answers every caller.

use super::*;

/// The group-commit writer: the only thread that writes the log.
pub(crate) struct GroupCommit {
    pub(crate) db: Database,
    pub(crate) ks: Keyspaces,
    /// Each resource's head version as committed (a cache: a miss reads the resource's last
    /// event key).
    pub(crate) heads: HashMap<ResourceId, u64>,
    pub(crate) counters: Arc<Counters>,
    /// Views committed and not yet stored in `views`.
    pub(crate) fresh: FreshViews,
    /// The keys of the `stale_views` records written since the last view checkpoint (a record
    /// per committed batch, numbered on from the last).
    pub(crate) stale: Range<u64>,
    pub(crate) view_checkpoint: Duration,
    pub(crate) last_checkpoint: Instant,
    /// Where each event is encoded before it is copied into its stored value.
    pub(crate) scratch: Vec<u8>,
    /// Below this much free space, appends are refused before anything is written.
    pub(crate) space: crate::space::SpaceFloor,
}

/// What one batch leaves to write once every append in it is checked.
#[derive(Default)]
pub(crate) struct Pending<'a> {
    /// Heads as the batch leaves them.
    pub(crate) heads: HashMap<ResourceId, u64>,
    /// What the batch leaves of each resource it touched.
    pub(crate) states: HashMap<ResourceId, Touched<'a>>,
    /// Command ids the batch commits (a repeat within the batch is a duplicate).
    pub(crate) commands: HashMap<CommandId, CommitRecord>,
    /// The batch's events, keyed, encoded and not yet in the write batch (see
    /// [`GroupCommit::commit_batch`] for why they wait).
    pub(crate) events: Vec<([u8; 24], fjall::Slice)>,
}

/// A resource as one batch leaves it.
#[derive(Clone, Copy)]
pub(crate) struct Touched<'a> {
    /// Its newest state.
    pub(crate) state: &'a ServerResource,
    /// The batch created it (its owner index entry is due).
    pub(crate) created: bool,
    /// The batch took it across a multiple of [`SNAPSHOT_EVERY`].
    pub(crate) snapshot_due: bool,
}

impl GroupCommit {
    /// Takes a batch, checks every append, commits once, answers all; until the queue closes.
    pub(crate) fn run(&mut self, mut rx: mpsc::Receiver<Job>, max_batch: usize) {
        // Views a crash left behind are read from the log until they are stored again.
        if !self.fresh.is_empty() {
            self.checkpoint_views();
        }
        let mut batch: Vec<Job> = Vec::new();
        while let Some(first) = rx.blocking_recv() {
            let mut appends = first.appends.len();
            batch.push(first);
            while appends < max_batch {
                match rx.try_recv() {
                    Ok(job) => {
                        appends += job.appends.len();
                        batch.push(job);
                    }
                    Err(_) => break,
                }
            }
            let outcomes = match self.space.check().and_then(|()| self.commit_batch(&batch)) {
                Ok(outcomes) => {
                    self.counters
                        .appends
                        .fetch_add(appends as u64, Ordering::Relaxed);
                    outcomes
                }
                // Logged once per incident by the floor itself.
                Err(e @ StoreError::NoSpace { .. }) => batch
                    .iter()
                    .flat_map(|job| &job.appends)
                    .map(|_| Err(AppendError::Store(e.clone())))
                    .collect(),
                Err(e) => {
                    tracing::error!(error = %e, appends, "group commit failed");
                    batch
                        .iter()
                        .flat_map(|job| &job.appends)
                        .map(|_| Err(AppendError::Store(e.clone())))
                        .collect()
                }
            };
            let mut outcomes = outcomes.into_iter();
            for job in batch.drain(..) {
                let answers = outcomes.by_ref().take(job.appends.len()).collect();
                let _ = job.reply.send(answers);
            }
            if self.fresh.len() >= VIEW_CHECKPOINT_RESOURCES
                || self.last_checkpoint.elapsed() >= self.view_checkpoint
            {
                self.checkpoint_views();
            }
        }
        if self.counters.skip_last_checkpoint.load(Ordering::Relaxed) {
            return;
        }
        self.checkpoint_views();
    }

    /// The head of `id`: as this batch leaves it, else as committed.
    pub(crate) fn head(
        &mut self,
        id: ResourceId,
        pending: &Pending<'_>,
    ) -> Result<u64, StoreError> {
        if let Some(&v) = pending.heads.get(&id) {
            return Ok(v);
        }
        if let Some(&v) = self.heads.get(&id) {
            return Ok(v);
        }
        let head = stored_head(&self.ks, id)?;
        if self.heads.len() >= HEAD_CACHE_LIMIT {
            self.heads.clear();
        }
        self.heads.insert(id, head);
        Ok(head)
    }

    /// The record of a command id already committed (by an earlier batch or this one).
    pub(crate) fn committed(
        &self,
        command_id: CommandId,
        pending: &Pending<'_>,
    ) -> Result<Option<CommitRecord>, StoreError> {
        if let Some(rec) = pending.commands.get(&command_id) {
            return Ok(Some(*rec));
        }
        stored_command(&self.ks, command_id)
    }

    /// Checks every append of the batch, writes what passes in one atomic write batch, and
    /// commits it with one fsync. An `Err` means nothing in the batch was committed. Outcomes
    /// come in the order of the jobs and of the appends within each.
    pub(crate) fn commit_batch(
        &mut self,
        batch: &[Job],
    ) -> Result<Vec<Result<CommitRecord, AppendError>>, StoreError> {
        let mut pending = Pending::default();
        let outcomes = self.check_batch(batch, &mut pending)?;
        let mut write = self.db.batch().durability(Some(PersistMode::SyncData));
        // Events and command records go in in key order: a memtable is a skiplist, and an insert
        // that lands next to the previous one finds its path through the upper levels in cache.
        pending.events.sort_unstable_by_key(|e| e.0);
        for (key, value) in pending.events.drain(..) {
            write.insert(&self.ks.events, key, value);
        }
        let mut records: Vec<_> = pending.commands.values().collect();
        records.sort_unstable_by_key(|r| *r.command_id.0.as_bytes());
        for record in records {
            write.insert(
                &self.ks.commands,
                *record.command_id.0.as_bytes(),
                encode_command(record),
            );
        }
        // The view of each resource touched, newest only, goes to memory once committed (the
        // next view checkpoint stores it); the batch records which resources it touched, so a
        // reopen after a crash knows which stored views may be behind. A snapshot goes in when
        // the batch took a resource across a multiple of SNAPSHOT_EVERY.
        let mut views = Vec::with_capacity(pending.states.len());
        let mut touched = Vec::with_capacity(pending.states.len() * 16);
        for (
            &id,
            &Touched {
                state,
                created,
                snapshot_due,
            },
        ) in &pending.states
        {
            if snapshot_due {
                write.insert(
                    &self.ks.snapshots,
                    resource_key(id),
                    encode_snapshot(state)?,
                );
            }
            let view = ClientResource::from_server(state);
            if created {
                write.insert(&self.ks.by_owner, owner_key(&view.owner, id), []);
            }
            touched.extend_from_slice(id.0.as_bytes());
            views.push(view);
        }
        if !touched.is_empty() {
            write.insert(&self.ks.stale_views, self.stale.end.to_be_bytes(), touched);
        }
        let started = Instant::now();
        write.commit().map_err(engine)?;
        self.count_commit(outcomes.len(), started.elapsed());
        // Committed: readers now get these views, and the batch's heads are the stored ones.
        if !views.is_empty() {
            self.stale.end += 1;
        }
        for view in views {
            self.fresh.insert(view.id, Fresh::View(view));
        }
        if self.heads.len() + pending.heads.len() > HEAD_CACHE_LIMIT {
            self.heads.clear();
        }
        self.heads.extend(pending.heads);
        Ok(outcomes)
    }

    /// Checks every append of the batch in order, staging what passes in `pending`; the
    /// outcomes come in the order of the jobs and of the appends within each.
    fn check_batch<'a>(
        &mut self,
        batch: &'a [Job],
        pending: &mut Pending<'a>,
    ) -> Result<Vec<Result<CommitRecord, AppendError>>, StoreError> {
        let mut outcomes = Vec::with_capacity(batch.len());
        for job in batch {
            // A job's appends form a chain (each expects the version the previous one leads to,
            // decided on its state): after the first that fails, none of the rest may commit,
            // even if another writer happened to bring the head to the version it expects.
            let mut broken = false;
            for req in &job.appends {
                let outcome = if broken {
                    Err(AppendError::Conflict {
                        expected: req.expected_version,
                        actual: self.head(req.resource_id, pending)?,
                    })
                } else {
                    self.check_and_stage(req, pending)?
                };
                broken = outcome.is_err();
                outcomes.push(outcome);
            }
        }
        Ok(outcomes)
    }

    /// Counts a committed group commit of `appends` that took `took` (journal write and
    /// fsync), in the store's counters and the process-wide metrics; a slow one is logged.
    fn count_commit(&self, appends: usize, took: Duration) {
        warden_core::metrics::record_group_commit(appends, took);
        warden_core::metrics::record_engine_memory(
            self.db.write_buffer_size(),
            self.db.cache_size(),
        );
        self.counters.commits.fetch_add(1, Ordering::Relaxed);
        let micros = took.as_micros() as u64;
        self.counters
            .commit_micros
            .fetch_add(micros, Ordering::Relaxed);
        self.counters
            .max_commit_micros
            .fetch_max(micros, Ordering::Relaxed);
        if took > SLOW_COMMIT {
            self.counters.slow_commits.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(took_ms = took.as_millis() as u64, "slow group commit");
        }
    }

    /// Checks one append against the heads and command ids as the batch so far leaves them and,
    /// if it passes, adds its writes to `pending`. The outer `Err` is a storage failure (the whole
    /// batch fails); the inner one is this append's refusal.
    pub(crate) fn check_and_stage<'a>(
        &mut self,
        req: &'a AppendRequest,
        pending: &mut Pending<'a>,
    ) -> Result<Result<CommitRecord, AppendError>, StoreError> {
        if let Err(e) = req.validate() {
            return Ok(Err(e.into()));
        }
        if let Some(record) = self.committed(req.command_id, pending)? {
            return Ok(Err(AppendError::Duplicate(record)));
        }
        let head = self.head(req.resource_id, pending)?;
        if head != req.expected_version {
            return Ok(Err(AppendError::Conflict {
                expected: req.expected_version,
                actual: head,
            }));
        }
        for event in &req.events {
            pending.events.push((
                event_key(req.resource_id, event.version),
                encode_event(event, &mut self.scratch)?,
            ));
        }
        let record = CommitRecord {
            resource_id: req.resource_id,
            command_id: req.command_id,
            first_version: head + 1,
            last_version: req.state.version,
        };
        pending.commands.insert(req.command_id, record);
        pending.heads.insert(req.resource_id, record.last_version);
        let earlier = pending.states.get(&req.resource_id);
        let crosses = req.state.version / SNAPSHOT_EVERY > head / SNAPSHOT_EVERY;
        pending.states.insert(
            req.resource_id,
            Touched {
                state: &req.state,
                created: head == 0 || earlier.is_some_and(|t| t.created),
                snapshot_due: crosses || earlier.is_some_and(|t| t.snapshot_due),
            },
        );
        Ok(Ok(record))
    }
}
