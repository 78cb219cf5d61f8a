//! The embedded backend: one fjall database (an LSM tree per keyspace, one shared journal) under a
//! data directory, no set-up.
//!
//! Keyspaces (all keys big-endian, so they sort by resource, then version; a resource id in a key
//! is in [key layout](KEY_LAYOUT) 2, its random half first):
//! - `events`: (resource, version) → event (format byte + compact MessagePack; the key carries the
//!   resource and the version, so the value does not repeat them);
//! - `commands`: command id → (resource, first version, last version): idempotency;
//! - `snapshots`: resource → its state (server schema) as of its last version that crossed a
//!   multiple of [`SNAPSHOT_EVERY`]: loading folds the few events after it;
//! - `views`: resource → its client-schema view (the read model), and `by_owner`:
//!   (owner, resource) → (), for listing an owner's resources (the id as is, so an owner's
//!   resources list in id order, i.e. creation time);
//! - `stale_views`: batch number → the ids of the resources the batch touched whose views are
//!   not yet stored (see "Views" below);
//! - `meta`: the data directory's key layout.
//!
//! **Group commit, one write per command.** One writer thread does every write. It takes all the
//! appends waiting in its queue (up to [`MAX_BATCH`]), checks each (command id new, expected
//! version = head), and puts into one atomic [`fjall::OwnedWriteBatch`] the events, the command
//! records, the list of resources the batch touched (and a snapshot when one is due). One journal
//! write and one `fdatasync` commit the lot; only then is each caller answered. So acknowledged
//! means durable, and a command's events are all there or none are.
//!
//! **Views, coalesced over time.** The newest view of each resource a batch touched goes to memory
//! once the batch is committed, before any caller is answered, and readers look there first: a
//! view is readable the moment its command is acknowledged. Every [`VIEW_CHECKPOINT_EVERY`] (or
//! once [`VIEW_CHECKPOINT_RESOURCES`] resources wait) the writer stores the waiting views in
//! `views` and removes the `stale_views` records that listed them, in one synced batch; a resource
//! changed many times in that while is written to `views` once, not once per batch. After a
//! crash, the `stale_views` records name every view that may be behind the log: the store reads
//! them when it opens (one per batch since the last checkpoint: ~1,400 in 500 ms of a 2,000-bot
//! swarm, read in milliseconds), serves those views from the log (snapshot plus the events after
//! it) and the writer stores them before it takes its first batch. No read is ever older than the
//! log, and opening does not replay it.
//!
//! The writer is the only writer, so it keeps each resource's head in memory (read back lazily
//! from the last event key after a restart). Appends from one actor's [`EventStore::append_many`] are one
//! job: checked in order; once one fails, the rest of that job is refused as a conflict.
//!
//! **Memory** is bounded by one budget ([`EmbeddedOptions::cache_mb`]): half of it is the block
//! cache, the rest bounds the memtables (write buffers) of the keyspaces; the journal is kept at
//! fjall's minimum (64 MiB), so recovery after a crash replays at most that much.

use crate::domain::{
    ClientResource, CommandId, EventEnvelope, PlayerId, ResourceEvent, ResourceId, ServerResource,
    Timestamp,
};
use crate::store::{
    AppendError, AppendRequest, CommitRecord, EventStore, Loaded, OpenError, ReadModelStore,
    StoreError, corrupt, encode,
};
use async_trait::async_trait;
use dashmap::DashMap;
use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode};
use foldhash::{HashMap, HashMapExt};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};

/// Most appends one group commit takes (a job is never split, so one may go over). Larger batches
/// amortise the fsync further but make the first caller in a batch wait for the others' writes.
pub const MAX_BATCH: usize = 1024;
/// Jobs (one caller's appends) that may wait for the writer; further callers wait for room
/// (back-pressure).
pub const WRITER_QUEUE: usize = 16 * 1024;
/// Default memory budget of the engine, in MiB (block cache + write buffers).
pub const DEFAULT_CACHE_MB: u64 = 256;
/// A group commit slower than this is logged (`slow group commit`) and counted
/// ([`CommitStats::slow_commits`]): every caller in it waited at least that long.
pub const SLOW_COMMIT: Duration = Duration::from_millis(100);
/// Heads the writer remembers before it forgets them all and reads them back lazily: bounds its
/// memory (~64 bytes a head) however many resources the store holds.
const HEAD_CACHE_LIMIT: usize = 1 << 20;

/// Default for [`EmbeddedOptions::view_checkpoint`]: the writer stores the views committed since
/// its last view checkpoint at most this much later. A resource changed many times in that while
/// is written to `views` once.
pub const VIEW_CHECKPOINT_EVERY: Duration = Duration::from_millis(500);
/// A view checkpoint is also due once this many resources have views waiting: bounds the memory
/// they hold (~250 bytes each) and what a reopen after a crash marks as stale.
pub const VIEW_CHECKPOINT_RESOURCES: usize = 16 * 1024;

/// A snapshot is written when a commit takes a resource's version across a multiple of this, so
/// loading folds fewer events than this after it. (A snapshot per commit would cost a write per
/// command; the view, which clients read, is current in memory from every commit on.)
pub const SNAPSHOT_EVERY: u64 = 64;

/// The first byte of every stored value: the layout of what follows. A new layout gets a new
/// number and a reader for the old one; stored values are never rewritten in place.
const FORMAT_V1: u8 = 1;
/// Views only, since 30 Nov 2026: the fields in order (compact MessagePack), no field names;
/// half the bytes of format 1's named map, which is still read.
const FORMAT_V2: u8 = 2;
/// A file that only Warden's previous, redb-based layout wrote.
const LEGACY_FILE: &str = "events.redb";

/// How a resource id is laid out in the keys of `events`, `snapshots` and `views`, recorded in
/// `meta` under [`KEY_LAYOUT_KEY`] when a data directory is created.
///
/// Layout 2 (since 30 Nov 2026) puts the id's second half first. A UUID v7 begins with its
/// 48-bit creation time, so in layout 1 (the id as is) every resource created in the same
/// minute or so shared its first four bytes, and the engine, which compares a 4-byte key prefix
/// before the rest, fell through to a full `memcmp` on almost every comparison of its memtable
/// inserts (8 % of a command's CPU). The second half is random (62 bits), so keys now part in
/// their first bytes. Layout 1 directories are refused with what to do ([`OpenError::KeyLayout`]).
pub const KEY_LAYOUT: u8 = 2;
/// The key of the layout record in `meta`.
const KEY_LAYOUT_KEY: &[u8] = b"key-layout";

/// Level-0 tables of `events` that trigger a compaction into level 1 (fjall's default: 4).
///
/// New events land all over the key space (every resource's range grows at its end), so every
/// level-0 table overlaps all of level 1, and each level-0 compaction rewrites level 1 whole.
/// Waiting for 12 tables instead of 4 rewrites it a third as often. fjall slows writes at 20
/// level-0 tables, which leaves 8 flushes for a compaction to finish. Measured at 10 M events
/// (`docs/performance.md`): the preload 8 % faster, the longest commit 94-96 -> 35-42 ms.
const EVENTS_L0_TABLES: u8 = 12;
/// Table size of `events` (fjall's default: 64 MiB): with [`EVENTS_L0_TABLES`] it keeps level 1
/// at about the default's 256 MiB (fjall sizes level 1 as tables × level-0 threshold).
const EVENTS_TABLE_MB: u64 = 24;

/// One caller's appends (checked in order) and where their outcomes go.
struct Job {
    appends: Vec<AppendRequest>,
    reply: oneshot::Sender<Vec<Result<CommitRecord, AppendError>>>,
}

/// Tunables of the embedded store, with documented defaults.
#[derive(Clone, Debug)]
pub struct EmbeddedOptions {
    /// Most appends one group commit takes (default [`MAX_BATCH`]). `1` turns group commit off:
    /// one fsync per append (benchmarks use it to show what group commit buys).
    pub max_batch: usize,
    /// The engine's memory budget in MiB (default [`DEFAULT_CACHE_MB`], at least 16): half block
    /// cache, half write buffers.
    pub cache_mb: u64,
    /// How long a committed view may wait in memory before the writer stores it in `views`
    /// (default [`VIEW_CHECKPOINT_EVERY`]; see "Views" in the module docs). `Duration::ZERO`
    /// stores the views of every batch right after it.
    pub view_checkpoint: Duration,
}

impl Default for EmbeddedOptions {
    fn default() -> Self {
        Self {
            max_batch: MAX_BATCH,
            cache_mb: DEFAULT_CACHE_MB,
            view_checkpoint: VIEW_CHECKPOINT_EVERY,
        }
    }
}

/// What the group-commit writer has done since the store was opened.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CommitStats {
    /// Batches committed (each one journal write and one fsync).
    pub commits: u64,
    /// Appends those batches carried (successful or refused); `appends / commits` is the mean
    /// group size.
    pub appends: u64,
    /// Time spent in the commits themselves (journal write + fsync), in microseconds.
    pub commit_micros: u64,
    /// The longest single commit so far, in microseconds (a stall shows here).
    pub max_commit_micros: u64,
    /// Commits that took longer than [`SLOW_COMMIT`].
    pub slow_commits: u64,
}

/// Counters the writer thread bumps once per commit (relaxed adds: cheap enough to keep on).
#[derive(Debug, Default)]
struct Counters {
    commits: AtomicU64,
    appends: AtomicU64,
    commit_micros: AtomicU64,
    max_commit_micros: AtomicU64,
    slow_commits: AtomicU64,
    /// Tests only: the writer stops without its last view checkpoint, as a killed process would.
    #[cfg(test)]
    skip_last_checkpoint: std::sync::atomic::AtomicBool,
}

/// The keyspaces of one database, cheap to clone (handles).
#[derive(Clone)]
struct Keyspaces {
    events: Keyspace,
    commands: Keyspace,
    snapshots: Keyspace,
    views: Keyspace,
    by_owner: Keyspace,
    stale_views: Keyspace,
}

/// A committed view the writer has not stored in `views` yet.
#[derive(Debug)]
enum Fresh {
    /// The view as of the resource's last commit.
    View(ClientResource),
    /// Found in `stale_views` when the store was opened (the process stopped before its view
    /// checkpoint): the stored view may be behind the log, so a read builds it from the log.
    Stale,
}

/// Views committed since the last view checkpoint, by resource: readers look here before `views`.
/// Only the writer adds to it or clears it.
type FreshViews = Arc<DashMap<ResourceId, Fresh, foldhash::fast::RandomState>>;

/// The event store and read-model store on one fjall database.
pub struct EmbeddedStore {
    db: Database,
    ks: Keyspaces,
    fresh: FreshViews,
    /// Queue to the group-commit writer thread.
    writer: mpsc::Sender<Job>,
    /// The writer thread, joined on drop so every accepted append is committed before the
    /// database closes.
    writer_thread: Option<std::thread::JoinHandle<()>>,
    /// Commits and appends done by the writer, for benchmarks and metrics.
    counters: Arc<Counters>,
    dir: PathBuf,
}

impl std::fmt::Debug for EmbeddedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedStore")
            .field("dir", &self.dir)
            .field("commits", &self.commit_stats())
            .finish_non_exhaustive()
    }
}

/// What is wrong with a stored key or value when the decoder itself has nothing to say.
#[derive(Debug, thiserror::Error)]
enum Layout {
    #[error("unknown stored format {0}")]
    UnknownFormat(u8),
    #[error("empty value")]
    Empty,
    #[error("{found} bytes where {expected} belong")]
    Length { expected: usize, found: usize },
    #[error("{found} bytes where at least {at_least} belong")]
    Short { at_least: usize, found: usize },
}

impl EmbeddedStore {
    /// Opens (creating if needed) the store under `dir`, with the default options.
    pub fn open(dir: &Path) -> Result<Self, OpenError> {
        Self::open_with(dir, EmbeddedOptions::default())
    }

    /// Opens (creating if needed) the store under `dir`. After a crash, fjall replays the tail of
    /// its journal (at most 64 MiB) and drops a torn last batch: that batch was never fsynced,
    /// so no caller was told it committed.
    pub fn open_with(dir: &Path, options: EmbeddedOptions) -> Result<Self, OpenError> {
        if dir.join(LEGACY_FILE).exists() {
            return Err(OpenError::OldLayout {
                dir: dir.to_owned(),
                file: LEGACY_FILE,
            });
        }
        std::fs::create_dir_all(dir).map_err(|source| OpenError::CreateDir {
            dir: dir.to_owned(),
            source,
        })?;
        let engine = |source| OpenError::Engine {
            dir: dir.to_owned(),
            source,
        };
        let budget = options.cache_mb.max(16) * 1024 * 1024;
        let db = Database::builder(dir)
            .cache_size(budget / 2)
            .max_journaling_size(64 * 1024 * 1024)
            .open()
            .map_err(engine)?;
        // Write buffers: the log takes the largest share; the rest is small and rewritten often.
        let memtable = |share: u64| {
            let bytes = (budget / 2 / share).max(1024 * 1024);
            move || KeyspaceCreateOptions::default().max_memtable_size(bytes)
        };
        let open = |name: &str, share: u64| db.keyspace(name, memtable(share)).map_err(engine);
        // The layout first: a directory is new if it has no log yet, and a new one gets its
        // layout record (synced) before the log exists, so a crash in between leaves a directory
        // that opens as new again.
        let new = !db.keyspace_exists("events");
        let meta = open("meta", 64)?;
        match meta.get(KEY_LAYOUT_KEY).map_err(engine)? {
            Some(v) if *v == [KEY_LAYOUT] => {}
            None if new => {
                meta.insert(KEY_LAYOUT_KEY, [KEY_LAYOUT]).map_err(engine)?;
                db.persist(PersistMode::SyncAll).map_err(engine)?;
            }
            found => {
                return Err(OpenError::KeyLayout {
                    dir: dir.to_owned(),
                    found: found.and_then(|v| v.first().copied()).unwrap_or(1),
                    reads: KEY_LAYOUT,
                });
            }
        }
        let events = db
            .keyspace("events", || {
                memtable(4)()
                    // lz4 from level 1 on, not from level 2 (fjall's default): with 12 tables in
                    // level 0, most of a young log sits in level 1.
                    .data_block_compression_policy(fjall::config::CompressionPolicy::new([
                        fjall::CompressionType::None,
                        fjall::CompressionType::Lz4,
                    ]))
                    // No Bloom filters: `events` is read by ranges (a resource's events, its
                    // last one), never by a point lookup, and a filter answers point lookups
                    // only. fjall builds them by default (19 bits per key in level 0, pinned),
                    // at every flush and compaction.
                    .filter_policy(fjall::config::FilterPolicy::disabled())
                    .compaction_strategy(Arc::new(
                        fjall::compaction::Leveled::default()
                            .with_l0_threshold(EVENTS_L0_TABLES)
                            .with_table_target_size(EVENTS_TABLE_MB * 1024 * 1024),
                    ))
            })
            .map_err(engine)?;
        let ks = Keyspaces {
            events,
            commands: open("commands", 8)?,
            snapshots: open("snapshots", 8)?,
            views: open("views", 8)?,
            by_owner: open("by_owner", 32)?,
            stale_views: open("stale_views", 64)?,
        };
        // Views the last process committed but did not store: read from the log until the
        // writer's first checkpoint stores them.
        let fresh = FreshViews::default();
        let mut stale: Option<Range<u64>> = None;
        for row in ks.stale_views.iter() {
            let (key, ids) = row.into_inner().map_err(engine)?;
            let seq = decode_stale_seq(&key)?;
            stale = Some(stale.map_or(seq, |r| r.start)..seq + 1);
            for id in decode_stale_ids(&ids)? {
                fresh.insert(id, Fresh::Stale);
            }
        }
        let (writer, rx) = mpsc::channel(WRITER_QUEUE);
        let counters = Arc::new(Counters::default());
        let mut commit = GroupCommit {
            db: db.clone(),
            ks: ks.clone(),
            heads: HashMap::new(),
            counters: counters.clone(),
            fresh: fresh.clone(),
            stale: stale.unwrap_or_default(),
            view_checkpoint: options.view_checkpoint,
            last_checkpoint: Instant::now(),
            scratch: Vec::new(),
        };
        let max_batch = options.max_batch.max(1);
        let writer_thread = std::thread::Builder::new()
            .name("warden-group-commit".into())
            .spawn(move || commit.run(rx, max_batch))
            .map_err(OpenError::WriterThread)?;
        Ok(Self {
            db,
            ks,
            fresh,
            writer,
            writer_thread: Some(writer_thread),
            counters,
            dir: dir.to_owned(),
        })
    }

    /// Group commits done so far and the appends they carried.
    pub fn commit_stats(&self) -> CommitStats {
        CommitStats {
            commits: self.counters.commits.load(Ordering::Relaxed),
            appends: self.counters.appends.load(Ordering::Relaxed),
            commit_micros: self.counters.commit_micros.load(Ordering::Relaxed),
            max_commit_micros: self.counters.max_commit_micros.load(Ordering::Relaxed),
            slow_commits: self.counters.slow_commits.load(Ordering::Relaxed),
        }
    }

    /// The directory the files live in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Bytes the database takes on disk (tables and journal).
    pub fn disk_bytes(&self) -> u64 {
        self.db.disk_space().unwrap_or(0)
    }

    /// Bytes of journal on disk (bounded: what a restart after a crash replays).
    pub fn journal_bytes(&self) -> u64 {
        self.db.journal_disk_space().unwrap_or(0)
    }

    /// Compacts every keyspace fully (benchmarks and tools: to measure settled disk use).
    pub fn major_compact(&self) -> Result<(), StoreError> {
        for ks in [
            &self.ks.events,
            &self.ks.commands,
            &self.ks.snapshots,
            &self.ks.views,
            &self.ks.by_owner,
        ] {
            ks.rotate_memtable_and_wait()?;
            ks.major_compact()?;
        }
        Ok(())
    }
}

#[cfg(test)]
impl EmbeddedStore {
    /// Closes the store as a kill would leave it: committed, but without the writer's last view
    /// checkpoint.
    fn close_as_if_killed(self) {
        self.counters
            .skip_last_checkpoint
            .store(true, Ordering::Relaxed);
    }
}

impl Drop for EmbeddedStore {
    fn drop(&mut self) {
        // Closing the queue lets the writer finish what it holds and exit; joining it means every
        // accepted append is committed before the database is closed.
        let (closed, _) = mpsc::channel(1);
        drop(std::mem::replace(&mut self.writer, closed));
        if let Some(t) = self.writer_thread.take() {
            let _ = t.join();
        }
    }
}

/// The group-commit writer: the only thread that writes the log.
struct GroupCommit {
    db: Database,
    ks: Keyspaces,
    /// Each resource's head version as committed (a cache: a miss reads `snapshots`).
    heads: HashMap<ResourceId, u64>,
    counters: Arc<Counters>,
    /// Views committed and not yet stored in `views`.
    fresh: FreshViews,
    /// The keys of the `stale_views` records written since the last view checkpoint (a record
    /// per committed batch, numbered on from the last).
    stale: Range<u64>,
    view_checkpoint: Duration,
    last_checkpoint: Instant,
    /// Where each event is encoded before it is copied into its stored value.
    scratch: Vec<u8>,
}

/// What one batch leaves to write once every append in it is checked.
#[derive(Default)]
struct Pending<'a> {
    /// Heads as the batch leaves them.
    heads: HashMap<ResourceId, u64>,
    /// The newest state of each resource the batch touched, whether the batch created it, and
    /// whether a snapshot is due.
    states: HashMap<ResourceId, (&'a ServerResource, bool, bool)>,
    /// Command ids the batch commits (a repeat within the batch is a duplicate).
    commands: HashMap<CommandId, CommitRecord>,
    /// The batch's events, keyed, encoded and not yet in the write batch (see
    /// [`GroupCommit::commit_batch`] for why they wait).
    events: Vec<([u8; 24], fjall::Slice)>,
}

impl GroupCommit {
    /// Takes a batch, checks every append, commits once, answers all; until the queue closes.
    fn run(&mut self, mut rx: mpsc::Receiver<Job>, max_batch: usize) {
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
            let outcomes = match self.commit_batch(&batch) {
                Ok(outcomes) => {
                    self.counters
                        .appends
                        .fetch_add(appends as u64, Ordering::Relaxed);
                    outcomes
                }
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
        #[cfg(test)]
        if self.counters.skip_last_checkpoint.load(Ordering::Relaxed) {
            return;
        }
        self.checkpoint_views();
    }

    /// Stores every view waiting in memory in `views` and removes the `stale_views` records
    /// that listed them, in one synced batch; then forgets them (readers find them in `views`).
    /// On failure all stay where they are (readers are still served from memory and the log)
    /// and the next checkpoint tries again.
    fn checkpoint_views(&mut self) {
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
    fn store_fresh_views(&self) -> Result<usize, StoreError> {
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
        write.commit()?;
        Ok(stored)
    }

    /// The head of `id`: as this batch leaves it, else as committed.
    fn head(&mut self, id: ResourceId, pending: &Pending<'_>) -> Result<u64, StoreError> {
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
    fn committed(
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
    fn commit_batch(
        &mut self,
        batch: &[Job],
    ) -> Result<Vec<Result<CommitRecord, AppendError>>, StoreError> {
        let mut pending = Pending::default();
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
                        actual: self.head(req.resource_id, &pending)?,
                    })
                } else {
                    self.check_and_stage(req, &mut pending)?
                };
                broken = outcome.is_err();
                outcomes.push(outcome);
            }
        }
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
        for (&id, &(state, created, snapshot_due)) in &pending.states {
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
        write.commit()?;
        let took = started.elapsed();
        crate::metrics::record_group_commit(outcomes.len(), took);
        crate::metrics::record_engine_memory(self.db.write_buffer_size(), self.db.cache_size());
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

    /// Checks one append against the heads and command ids as the batch so far leaves them and,
    /// if it passes, adds its writes to `pending`. The outer `Err` is a storage failure (the whole
    /// batch fails); the inner one is this append's refusal.
    fn check_and_stage<'a>(
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
        let (created, snapshot_due) = pending
            .states
            .get(&req.resource_id)
            .map_or((false, false), |&(_, created, due)| (created, due));
        let crosses = req.state.version / SNAPSHOT_EVERY > head / SNAPSHOT_EVERY;
        pending.states.insert(
            req.resource_id,
            (&req.state, created || head == 0, snapshot_due || crosses),
        );
        Ok(Ok(record))
    }
}

/// The commit a command id produced, as stored.
fn stored_command(
    ks: &Keyspaces,
    command_id: CommandId,
) -> Result<Option<CommitRecord>, StoreError> {
    match ks.commands.get(command_id.0.as_bytes())? {
        Some(bytes) => Ok(Some(decode_command(command_id, &bytes)?)),
        None => Ok(None),
    }
}

/// A resource's head as stored: its last event's version (0 if it has none).
fn stored_head(ks: &Keyspaces, id: ResourceId) -> Result<u64, StoreError> {
    match ks.events.prefix(resource_key(id)).next_back() {
        Some(row) => {
            let key = row.key()?;
            Ok(split_event_key(&key)?.1)
        }
        None => Ok(0),
    }
}

/// A resource's latest snapshot (server schema), if it has one, and the events after it.
fn stored_load(ks: &Keyspaces, id: ResourceId) -> Result<Loaded, StoreError> {
    let snapshot = match ks.snapshots.get(resource_key(id))? {
        Some(bytes) => Some(decode_snapshot(&bytes)?.1),
        None => None,
    };
    let after = snapshot.as_ref().map_or(0, |s| s.version);
    let events = stored_events(ks, id, after, usize::MAX)?;
    Ok(Loaded { snapshot, events })
}

/// Up to `limit` events of `id` after `after_version`, in version order.
fn stored_events(
    ks: &Keyspaces,
    id: ResourceId,
    after_version: u64,
    limit: usize,
) -> Result<Vec<EventEnvelope>, StoreError> {
    let Some(start) = after_version.checked_add(1) else {
        return Ok(Vec::new());
    };
    ks.events
        .range(event_key(id, start)..=event_key(id, u64::MAX))
        .take(limit)
        .map(|row| {
            let (k, v) = row.into_inner()?;
            decode_event(&k, &v)
        })
        .collect()
}

// ---- keys and values -------------------------------------------------------------------------

/// A `stale_views` key: the writer's count of batches with views since the oldest record still
/// there (big-endian u64).
fn decode_stale_seq(key: &[u8]) -> Result<u64, StoreError> {
    let seq: [u8; 8] = key.try_into().map_err(|_| {
        StoreError::corrupt(
            "stale-views key",
            Layout::Length {
                expected: 8,
                found: key.len(),
            },
        )
    })?;
    Ok(u64::from_be_bytes(seq))
}

/// A `stale_views` value: the ids (16 bytes each, as is) of the resources one batch touched.
fn decode_stale_ids(bytes: &[u8]) -> Result<Vec<ResourceId>, StoreError> {
    if !bytes.len().is_multiple_of(16) {
        return Err(StoreError::corrupt(
            "stale-views record",
            Layout::Length {
                expected: bytes.len() / 16 * 16 + 16,
                found: bytes.len(),
            },
        ));
    }
    Ok(bytes
        .chunks_exact(16)
        .map(|id| {
            let mut raw = [0u8; 16];
            raw.copy_from_slice(id);
            ResourceId(uuid::Uuid::from_bytes(raw))
        })
        .collect())
}

/// A resource id as keys hold it ([`KEY_LAYOUT`] 2): its two 8-byte halves swapped (a rotation
/// by 64 bits), so the second, random half comes first.
fn resource_key(id: ResourceId) -> [u8; 16] {
    id.0.as_u128().rotate_left(64).to_be_bytes()
}

/// The resource id a key's first 16 bytes hold: the same swap undoes [`resource_key`].
fn resource_from_key(key: &[u8; 16]) -> ResourceId {
    ResourceId(uuid::Uuid::from_u128(
        u128::from_be_bytes(*key).rotate_left(64),
    ))
}

fn event_key(id: ResourceId, version: u64) -> [u8; 24] {
    let mut key = [0u8; 24];
    key[..16].copy_from_slice(&resource_key(id));
    key[16..].copy_from_slice(&version.to_be_bytes());
    key
}

/// Owner, a zero byte, then the resource id (player ids hold no zero byte: tokens are text).
fn owner_key(owner: &PlayerId, id: ResourceId) -> Vec<u8> {
    let mut key = Vec::with_capacity(owner.as_str().len() + 17);
    key.extend_from_slice(owner.as_str().as_bytes());
    key.push(0);
    key.extend_from_slice(id.0.as_bytes());
    key
}

/// An event as stored under its (resource, version) key: the rest of the envelope.
#[derive(serde::Serialize)]
struct StoredEventRef<'a> {
    command_id: CommandId,
    at: Timestamp,
    schema: u16,
    event: &'a ResourceEvent,
}

#[derive(serde::Deserialize)]
struct StoredEvent {
    command_id: CommandId,
    at: Timestamp,
    schema: u16,
    event: ResourceEvent,
}

/// The value after its format byte, if the format is one this version reads.
fn body(bytes: &[u8]) -> Result<&[u8], Layout> {
    match bytes.split_first() {
        Some((&FORMAT_V1, rest)) => Ok(rest),
        Some((&other, _)) => Err(Layout::UnknownFormat(other)),
        None => Err(Layout::Empty),
    }
}

/// Format byte and the rest of the envelope, encoded in `scratch` (kept by the caller, so an event
/// costs the one allocation of its stored value).
fn encode_event(e: &EventEnvelope, scratch: &mut Vec<u8>) -> Result<fjall::Slice, StoreError> {
    let stored = StoredEventRef {
        command_id: e.command_id,
        at: e.at,
        schema: e.schema,
        event: &e.event,
    };
    scratch.clear();
    scratch.push(FORMAT_V1);
    rmp_serde::encode::write(scratch, &stored).map_err(encode("event"))?;
    Ok(fjall::Slice::from(scratch.as_slice()))
}

fn decode_event(key: &[u8], value: &[u8]) -> Result<EventEnvelope, StoreError> {
    let (id, version) = split_event_key(key)?;
    let stored: StoredEvent =
        rmp_serde::from_slice(body(value).map_err(corrupt("event"))?).map_err(corrupt("event"))?;
    Ok(EventEnvelope {
        resource_id: id,
        version,
        command_id: stored.command_id,
        at: stored.at,
        schema: stored.schema,
        event: stored.event,
    })
}

fn split_event_key(key: &[u8]) -> Result<(ResourceId, u64), StoreError> {
    let key: &[u8; 24] = key.try_into().map_err(|_| {
        StoreError::corrupt(
            "event key",
            Layout::Length {
                expected: 24,
                found: key.len(),
            },
        )
    })?;
    let (id, version) = key.split_at(16);
    let id = resource_from_key(id.try_into().map_err(corrupt("event key"))?);
    let version = u64::from_be_bytes(version.try_into().map_err(corrupt("event key"))?);
    Ok((id, version))
}

/// Format byte, the version (big-endian, so a head is read without decoding the rest), state.
fn encode_snapshot(state: &ServerResource) -> Result<Vec<u8>, StoreError> {
    let body = rmp_serde::to_vec(state).map_err(encode("snapshot"))?;
    let mut out = Vec::with_capacity(body.len() + 9);
    out.push(FORMAT_V1);
    out.extend_from_slice(&state.version.to_be_bytes());
    out.extend_from_slice(&body);
    Ok(out)
}

fn decode_snapshot_version(bytes: &[u8]) -> Result<u64, StoreError> {
    let rest = body(bytes).map_err(corrupt("snapshot"))?;
    let version: [u8; 8] = rest
        .get(..8)
        .and_then(|v| v.try_into().ok())
        .ok_or_else(|| {
            StoreError::corrupt(
                "snapshot",
                Layout::Short {
                    at_least: 9,
                    found: bytes.len(),
                },
            )
        })?;
    Ok(u64::from_be_bytes(version))
}

fn decode_snapshot(bytes: &[u8]) -> Result<(u64, ServerResource), StoreError> {
    let version = decode_snapshot_version(bytes)?;
    // Past the format byte and the version, both checked just now.
    let state: ServerResource = rmp_serde::from_slice(&bytes[9..]).map_err(corrupt("snapshot"))?;
    Ok((version, state))
}

/// A view as stored in format 2: [`ClientResource`]'s fields in this order, none left out (the
/// wire form leaves empty options out, which a positional layout cannot express). Borrowed to
/// write (`StoredView<&PlayerId, &str>`), owned to read (`StoredView<PlayerId, String>`).
#[derive(serde::Serialize, serde::Deserialize)]
struct StoredView<P, S> {
    id: ResourceId,
    owner: P,
    resource_type: S,
    amount: u64,
    amount_at: Timestamp,
    max_amount: u64,
    regen_milli: Option<u64>,
    locked: bool,
    lock_reason: Option<S>,
    lock_expires_at: Option<Timestamp>,
    version: u64,
    updated_at: Timestamp,
}

fn encode_view(view: &ClientResource) -> Result<Vec<u8>, StoreError> {
    // Destructured whole, here and in `decode_view`: a field added to the view and not to its
    // stored form does not compile.
    let ClientResource {
        id,
        owner,
        resource_type,
        amount,
        amount_at,
        max_amount,
        regen_milli,
        locked,
        lock_reason,
        lock_expires_at,
        version,
        updated_at,
    } = view;
    let stored = StoredView {
        id: *id,
        owner,
        resource_type: resource_type.as_str(),
        amount: *amount,
        amount_at: *amount_at,
        max_amount: *max_amount,
        regen_milli: *regen_milli,
        locked: *locked,
        lock_reason: lock_reason.as_deref(),
        lock_expires_at: *lock_expires_at,
        version: *version,
        updated_at: *updated_at,
    };
    let mut out = Vec::with_capacity(96);
    out.push(FORMAT_V2);
    rmp_serde::encode::write(&mut out, &stored).map_err(encode("view"))?;
    Ok(out)
}

fn decode_view(bytes: &[u8]) -> Result<ClientResource, StoreError> {
    match bytes.split_first() {
        // Format 1: the named map of `ClientResource` itself.
        Some((&FORMAT_V1, rest)) => rmp_serde::from_slice(rest).map_err(corrupt("view")),
        Some((&FORMAT_V2, rest)) => {
            let StoredView::<PlayerId, String> {
                id,
                owner,
                resource_type,
                amount,
                amount_at,
                max_amount,
                regen_milli,
                locked,
                lock_reason,
                lock_expires_at,
                version,
                updated_at,
            } = rmp_serde::from_slice(rest).map_err(corrupt("view"))?;
            Ok(ClientResource {
                id,
                owner,
                resource_type,
                amount,
                amount_at,
                max_amount,
                regen_milli,
                locked,
                lock_reason,
                lock_expires_at,
                version,
                updated_at,
            })
        }
        Some((&other, _)) => Err(StoreError::corrupt("view", Layout::UnknownFormat(other))),
        None => Err(StoreError::corrupt("view", Layout::Empty)),
    }
}

/// Resource id, first version, last version: 32 bytes.
fn encode_command(rec: &CommitRecord) -> [u8; 32] {
    let mut out = [0u8; 32];
    out[..16].copy_from_slice(rec.resource_id.0.as_bytes());
    out[16..24].copy_from_slice(&rec.first_version.to_be_bytes());
    out[24..].copy_from_slice(&rec.last_version.to_be_bytes());
    out
}

fn decode_command(command_id: CommandId, bytes: &[u8]) -> Result<CommitRecord, StoreError> {
    let bytes: &[u8; 32] = bytes.try_into().map_err(|_| {
        StoreError::corrupt(
            "command record",
            Layout::Length {
                expected: 32,
                found: bytes.len(),
            },
        )
    })?;
    let resource = uuid::Uuid::from_slice(&bytes[..16]).map_err(corrupt("command record"))?;
    let first = u64::from_be_bytes(
        bytes[16..24]
            .try_into()
            .map_err(corrupt("command record"))?,
    );
    let last = u64::from_be_bytes(bytes[24..].try_into().map_err(corrupt("command record"))?);
    Ok(CommitRecord {
        resource_id: ResourceId(resource),
        command_id,
        first_version: first,
        last_version: last,
    })
}

#[async_trait]
impl EventStore for EmbeddedStore {
    async fn append(&self, req: AppendRequest) -> Result<CommitRecord, AppendError> {
        self.append_many(vec![req]).await.pop().unwrap_or_else(|| {
            Err(StoreError::NoOutcome("the group-commit writer gave no outcome").into())
        })
    }

    async fn append_many(
        &self,
        appends: Vec<AppendRequest>,
    ) -> Vec<Result<CommitRecord, AppendError>> {
        let count = appends.len();
        let failed = |e: StoreError| {
            (0..count)
                .map(|_| Err(e.clone().into()))
                .collect::<Vec<_>>()
        };
        if count == 0 {
            return Vec::new();
        }
        let (reply, answer) = oneshot::channel();
        if self.writer.send(Job { appends, reply }).await.is_err() {
            return failed(StoreError::Closed);
        }
        answer
            .await
            .unwrap_or_else(|_| failed(StoreError::NoOutcome("the group-commit writer stopped")))
    }

    async fn load(&self, id: ResourceId) -> Result<Loaded, StoreError> {
        stored_load(&self.ks, id)
    }

    async fn events(
        &self,
        id: ResourceId,
        after_version: u64,
        limit: usize,
    ) -> Result<Vec<EventEnvelope>, StoreError> {
        stored_events(&self.ks, id, after_version, limit)
    }

    async fn find_command(
        &self,
        command_id: CommandId,
    ) -> Result<Option<CommitRecord>, StoreError> {
        stored_command(&self.ks, command_id)
    }

    async fn head(&self, id: ResourceId) -> Result<u64, StoreError> {
        stored_head(&self.ks, id)
    }

    /// From the log itself (not the read model, which a rebuild clears): one seek per resource,
    /// skipping each one's events.
    async fn resource_ids(&self) -> Result<Vec<ResourceId>, StoreError> {
        use std::ops::Bound::{Excluded, Unbounded};
        let mut ids = Vec::new();
        let mut after: Option<[u8; 24]> = None;
        loop {
            let next = match after {
                None => self.ks.events.iter().next(),
                Some(key) => self
                    .ks
                    .events
                    .range::<&[u8], _>((Excluded(&key[..]), Unbounded))
                    .next(),
            };
            let Some(row) = next else { break };
            let (id, _) = split_event_key(&row.key()?)?;
            ids.push(id);
            after = Some(event_key(id, u64::MAX));
        }
        Ok(ids)
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
            let stored = match self.ks.views.get(key)? {
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
        write.commit()?;
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
        match self.ks.views.get(resource_key(id))? {
            Some(bytes) => Ok(Some(decode_view(&bytes)?)),
            None => Ok(None),
        }
    }

    async fn list_by_owner(&self, owner: &PlayerId) -> Result<Vec<ClientResource>, StoreError> {
        let mut prefix = owner.as_str().as_bytes().to_vec();
        prefix.push(0);
        let mut out = Vec::new();
        for row in self.ks.by_owner.prefix(&prefix) {
            let key = row.key()?;
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
            ks.clear()?;
        }
        self.fresh.clear();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Balance, stamp};

    #[test]
    fn an_event_round_trips_through_its_stored_form() {
        let id = ResourceId::new();
        let command = CommandId::new();
        let events = stamp(
            id,
            41,
            command,
            Timestamp(7),
            vec![
                ResourceEvent::ResourceAllocated {
                    amount: 3,
                    reason: "shop".into(),
                    balance: Balance {
                        amount: 9,
                        regen_carry: 12,
                        regen_at: Timestamp(7),
                    },
                    by: PlayerId::new("alice"),
                },
                ResourceEvent::ResourceLockExpired {
                    expired_at: Timestamp(8),
                },
            ],
        );
        for e in &events {
            let stored = encode_event(e, &mut Vec::new()).unwrap();
            let back = decode_event(&event_key(id, e.version), &stored).unwrap();
            assert_eq!(&back, e);
        }
    }

    #[test]
    fn a_data_dir_in_the_old_redb_layout_is_refused_with_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(LEGACY_FILE), b"redb").unwrap();
        let Err(err) = EmbeddedStore::open(dir.path()) else {
            panic!("an old data directory must not be opened as a new one");
        };
        let text = err.to_string();
        assert!(
            text.contains("warden export") && text.contains("warden import"),
            "{text}"
        );
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            1,
            "nothing written beside it"
        );
    }

    /// A directory as a build of key layout 1 left it: a log, no layout record.
    fn write_layout_1_dir(dir: &Path) {
        let db = Database::builder(dir).open().unwrap();
        let events = db
            .keyspace("events", KeyspaceCreateOptions::default)
            .unwrap();
        let id = ResourceId::new();
        let mut key = id.0.as_bytes().to_vec();
        key.extend_from_slice(&1u64.to_be_bytes());
        events.insert(key, [FORMAT_V1]).unwrap();
        db.persist(PersistMode::SyncAll).unwrap();
    }

    #[test]
    fn a_data_dir_in_key_layout_1_is_refused_with_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        write_layout_1_dir(dir.path());
        let Err(err) = EmbeddedStore::open(dir.path()) else {
            panic!("a layout-1 directory must not be read with layout-2 keys");
        };
        assert!(
            matches!(err, OpenError::KeyLayout { found: 1, .. }),
            "{err:?}"
        );
        let text = err.to_string();
        assert!(
            text.contains("layout 1")
                && text.contains("warden export")
                && text.contains("warden import"),
            "{text}"
        );
        // Refused, not converted: it is refused again.
        assert!(EmbeddedStore::open(dir.path()).is_err());
    }

    #[test]
    fn a_new_data_dir_records_its_key_layout_and_reopens() {
        let dir = tempfile::tempdir().unwrap();
        drop(EmbeddedStore::open(dir.path()).unwrap());
        let db = Database::builder(dir.path()).open().unwrap();
        let meta = db.keyspace("meta", KeyspaceCreateOptions::default).unwrap();
        assert_eq!(
            meta.get(KEY_LAYOUT_KEY).unwrap().as_deref(),
            Some(&[KEY_LAYOUT][..])
        );
        // A layout this version does not know (a newer one) is refused, naming it.
        meta.insert(KEY_LAYOUT_KEY, [9]).unwrap();
        db.persist(PersistMode::SyncAll).unwrap();
        drop((meta, db));
        let Err(err) = EmbeddedStore::open(dir.path()) else {
            panic!("an unknown layout must be refused");
        };
        assert!(err.to_string().contains("key layout 9"), "{err}");
    }

    #[test]
    fn resource_keys_invert_and_part_in_their_first_bytes() {
        // Ids made in the same millisecond share their first six bytes; their keys must not
        // (the engine compares a 4-byte prefix first).
        let (a, b) = (ResourceId::new(), ResourceId::new());
        assert_eq!(a.0.as_bytes()[..4], b.0.as_bytes()[..4]);
        assert_ne!(resource_key(a)[..4], resource_key(b)[..4]);
        // Layout 2 exactly: the id's bytes 8..16, then 0..8 (what is on disk must not drift).
        let bytes = a.0.as_bytes();
        assert_eq!(resource_key(a)[..], [&bytes[8..], &bytes[..8]].concat()[..]);
        assert_eq!(resource_from_key(&resource_key(a)), a);
        assert_eq!(split_event_key(&event_key(b, 7)).unwrap(), (b, 7));
        // Events of one resource stay together and in version order.
        assert!(event_key(a, 9) < event_key(a, 10));
        assert_eq!(event_key(a, 1)[..16], resource_key(a));
    }

    #[test]
    fn a_view_round_trips_and_one_stored_in_format_1_still_reads() {
        let locked = ClientResource {
            id: ResourceId::new(),
            owner: PlayerId::new("alice"),
            resource_type: "gold".into(),
            amount: 850,
            amount_at: Timestamp(7),
            max_amount: 1_000,
            regen_milli: Some(500),
            locked: true,
            lock_reason: Some("trade".into()),
            lock_expires_at: Some(Timestamp(9)),
            version: 3,
            updated_at: Timestamp(7),
        };
        let spectated = ClientResource {
            regen_milli: None,
            locked: false,
            lock_reason: None,
            lock_expires_at: None,
            ..locked.clone()
        };
        for view in [locked, spectated] {
            let stored = encode_view(&view).unwrap();
            assert_eq!(stored[0], FORMAT_V2);
            assert_eq!(decode_view(&stored).unwrap(), view);
            // What format 1 wrote: the named map.
            let mut v1 = vec![FORMAT_V1];
            v1.extend(rmp_serde::to_vec_named(&view).unwrap());
            assert_eq!(decode_view(&v1).unwrap(), view);
            assert!(
                stored.len() * 3 < v1.len() * 2,
                "{} vs {}",
                stored.len(),
                v1.len()
            );
        }
    }

    #[test]
    fn a_value_of_an_unknown_format_is_refused_not_misread() {
        let id = ResourceId::new();
        let err = decode_event(&event_key(id, 1), &[9, 1, 2]).unwrap_err();
        assert!(
            matches!(err, StoreError::Corrupt { what: "event", .. }),
            "{err:?}"
        );
        // The log line says what and why; the cause stays reachable as the source.
        assert_eq!(err.to_string(), "corrupt event: unknown stored format 9");
        let source = std::error::Error::source(&err).expect("the cause is kept");
        assert!(source.downcast_ref::<Layout>().is_some(), "{source:?}");
    }

    /// Commits a resource at versions 1 to 4 (a create, then three adds) on `store`, its states
    /// replayed from the events as an actor would; returns the id and the last state.
    async fn four_versions(store: &EmbeddedStore) -> (ResourceId, ServerResource) {
        use crate::store::conformance::{added, created, request};
        let id = ResourceId::new();
        let mut state = None;
        for v in 0..4u64 {
            let events = match v {
                0 => vec![created("vera", 3)],
                _ => vec![added(1, v + 3)],
            };
            let mut req = request(id, v, events);
            state = crate::domain::replay(state, &req.events);
            req.state = state.clone().expect("a state");
            EventStore::append(store, req).await.unwrap();
        }
        (id, state.expect("a state"))
    }

    fn deferred() -> EmbeddedOptions {
        EmbeddedOptions {
            view_checkpoint: Duration::from_secs(3600),
            ..EmbeddedOptions::default()
        }
    }

    /// `want` is what a read of its resource and a list of its owner's resources give.
    async fn assert_served(store: &EmbeddedStore, want: &ClientResource) {
        assert_eq!(
            ReadModelStore::get(store, want.id).await.unwrap().as_ref(),
            Some(want)
        );
        assert_eq!(
            store.list_by_owner(&want.owner).await.unwrap(),
            vec![want.clone()]
        );
    }

    /// The view as stored in `views`, not as served.
    fn stored_view(store: &EmbeddedStore, id: ResourceId) -> Option<ClientResource> {
        let bytes = store.ks.views.get(resource_key(id)).unwrap()?;
        Some(decode_view(&bytes).unwrap())
    }

    /// Guards against: a read that returns the view of an older version because the newest one
    /// waits in memory for its checkpoint; and a checkpoint that never stores it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_view_is_read_at_once_and_stored_by_the_checkpoint_at_close() {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open_with(dir.path(), deferred()).unwrap();
        let (id, state) = four_versions(&store).await;
        let want = ClientResource::from_server(&state);
        assert_eq!(
            stored_view(&store, id),
            None,
            "not stored before the checkpoint"
        );
        assert_served(&store, &want).await;
        drop(store);

        let store = EmbeddedStore::open_with(dir.path(), deferred()).unwrap();
        assert_eq!(stored_view(&store, id), Some(want.clone()));
        assert!(store.fresh.is_empty(), "a clean close leaves nothing stale");
        assert_eq!(store.ks.stale_views.iter().count(), 0);
    }

    /// Guards against: a view left behind by a crash before its checkpoint (served stale after the
    /// reopen, or never stored).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_view_a_crash_left_unstored_is_built_from_the_log_and_then_stored() {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open_with(dir.path(), deferred()).unwrap();
        let (id, state) = four_versions(&store).await;
        let want = ClientResource::from_server(&state);
        store.close_as_if_killed();

        let store = EmbeddedStore::open_with(dir.path(), deferred()).unwrap();
        assert_served(&store, &want).await;
        // The writer stores what a crash left behind when it starts, before any command.
        store.close_as_if_killed();
        let store = EmbeddedStore::open_with(dir.path(), deferred()).unwrap();
        assert_eq!(stored_view(&store, id), Some(want));
        assert!(store.fresh.is_empty());
    }

    /// Guards against: Bloom filters built for `events` (never read by a point lookup, so pure
    /// cost at every flush and compaction), and reads of a resource's log that relied on them.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_log_has_no_bloom_filters_and_reads_the_same_from_its_tables() {
        use fjall::AbstractTree;
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(dir.path()).unwrap();
        let (id, state) = four_versions(&store).await;
        store.major_compact().unwrap();
        assert!(
            store.ks.events.tree.table_count() > 0,
            "the log is in tables"
        );
        assert_eq!(store.ks.events.tree.filter_size(), 0);
        assert!(
            store.ks.commands.tree.filter_size() > 0,
            "command ids are looked up one by one and keep their filters"
        );
        let events = EventStore::events(&store, id, 0, usize::MAX).await.unwrap();
        assert_eq!(
            events.iter().map(|e| e.version).collect::<Vec<_>>(),
            [1, 2, 3, 4]
        );
        assert_eq!(EventStore::head(&store, id).await.unwrap(), state.version);
        assert_eq!(store.load(id).await.unwrap().state(), Some(state));
    }
}
