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
//! fjall's minimum (64 MiB), so recovery after a crash replays at most that much. A graceful close
//! flushes the memtables first, so the next open replays nothing.

mod codec;
mod open;
mod reads;
mod recovering;
pub mod space;
#[cfg(test)]
mod tests;
mod views;
mod writer;

use codec::*;
use reads::*;
pub use recovering::{EXIT_STORE_FAILED, OnFailure, RecoveringStore};
use views::{Fresh, FreshViews};
use writer::GroupCommit;

use async_trait::async_trait;
use dashmap::DashMap;
use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode};
use foldhash::{HashMap, HashMapExt};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use warden_core::domain::{
    ClientResource, ClientSchema, CommandId, EventEnvelope, PlayerId, ResourceEvent, ResourceId,
    ServerResource, Timestamp,
};
use warden_core::store::job::{self, AppendJob as Job};
use warden_core::store::{
    AppendError, AppendRequest, CommitRecord, EventStore, Loaded, OpenError, ReadModelStore,
    StoreError, corrupt, encode,
};

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
/// Views only: the fields in order (compact MessagePack), no field names; half the bytes of
/// format 1's named map, which is still read.
const FORMAT_V2: u8 = 2;
/// A file that only Warden's previous, redb-based layout wrote.
const LEGACY_FILE: &str = "events.redb";

/// How a resource id is laid out in the keys of `events`, `snapshots` and `views`, recorded in
/// `meta` under [`KEY_LAYOUT_KEY`] when a data directory is created.
///
/// Layout 2 puts the id's second half first. A UUID v7 begins with its
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
/// (`docs/archive/performance-notebook.md`): the preload 8 % faster, the longest commit 94-96 -> 35-42 ms.
const EVENTS_L0_TABLES: u8 = 12;
/// Table size of `events` (fjall's default: 64 MiB): with [`EVENTS_L0_TABLES`] it keeps level 1
/// at about the default's 256 MiB (fjall sizes level 1 as tables × level-0 threshold).
const EVENTS_TABLE_MB: u64 = 24;

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
    /// Below this many bytes free on the data directory's file system, appends are refused
    /// ([`StoreError::NoSpace`]) until space is freed (default [`DEFAULT_MIN_FREE_BYTES`]; `0`
    /// turns the floor off).
    pub min_free_bytes: u64,
}

/// The default free-space floor: 256 MiB, room for the journal (64 MiB at most), memtable flushes
/// and a compaction's new tables before the old ones are gone.
pub const DEFAULT_MIN_FREE_BYTES: u64 = 256 * 1024 * 1024;

impl Default for EmbeddedOptions {
    fn default() -> Self {
        Self {
            max_batch: MAX_BATCH,
            cache_mb: DEFAULT_CACHE_MB,
            view_checkpoint: VIEW_CHECKPOINT_EVERY,
            min_free_bytes: DEFAULT_MIN_FREE_BYTES,
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
    /// Set by [`EmbeddedStore::close_as_if_killed`]: the writer stops without its last view
    /// checkpoint, as a killed process would.
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

impl Keyspaces {
    /// Every keyspace but `meta`.
    fn all(&self) -> [&Keyspace; 6] {
        [
            &self.events,
            &self.commands,
            &self.snapshots,
            &self.views,
            &self.by_owner,
            &self.stale_views,
        ]
    }
}

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

impl EmbeddedStore {
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
        for ks in self.ks.all() {
            ks.rotate_memtable_and_wait().map_err(engine)?;
            ks.major_compact().map_err(engine)?;
        }
        Ok(())
    }
}

impl EmbeddedStore {
    /// Closes the store as a kill would leave it: every acknowledged append committed, but
    /// without the writer's last view checkpoint (crash tests and tools).
    pub fn close_as_if_killed(self) {
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
        if !self.counters.skip_last_checkpoint.load(Ordering::Relaxed) {
            self.flush_for_restart();
        }
    }
}

impl EmbeddedStore {
    /// On a graceful close: writes every memtable out to tables, so the journal holds nothing
    /// the next open must replay (a restart opens in milliseconds instead of replaying up to the
    /// journal's cap). Skipped on an engine that failed; bounded, so a close never hangs.
    fn flush_for_restart(&self) {
        const BOUND: Duration = Duration::from_secs(10);
        if self.db.persist(PersistMode::SyncAll).is_err() {
            return;
        }
        let started = Instant::now();
        for ks in self.ks.all() {
            if ks.rotate_memtable().is_err() {
                return;
            }
        }
        // The sealed memtables are flushed in the background; each journal is deleted once
        // nothing in it is unflushed.
        while self.db.journal_count() > 1 && started.elapsed() < BOUND {
            std::thread::sleep(Duration::from_millis(2));
        }
        tracing::debug!(
            took_ms = started.elapsed().as_millis() as u64,
            journals = self.db.journal_count(),
            "memtables flushed for a fast reopen"
        );
    }
}

/// For `map_err`: the engine failed a read, write or commit.
fn engine(e: fjall::Error) -> StoreError {
    StoreError::engine("embedded store engine", e)
}
