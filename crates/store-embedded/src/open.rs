//! Opening a data directory: its layout checked (or recorded, when new), the database and its
//! keyspaces with their memory shares, the views a crash left unstored, and the writer thread.

use super::*;

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
        let opener = Opener {
            dir,
            budget: options.cache_mb.max(16) * 1024 * 1024,
        };
        let db = Database::builder(dir)
            .cache_size(opener.budget / 2)
            .max_journaling_size(64 * 1024 * 1024)
            .open()
            .map_err(|e| match e {
                fjall::Error::Locked => OpenError::InUse {
                    dir: dir.to_owned(),
                },
                e => opener.engine(e),
            })?;
        opener.check_layout(&db)?;
        let ks = opener.keyspaces(&db)?;
        // Views the last process committed but did not store: read from the log until the
        // writer's first checkpoint stores them.
        let (fresh, stale) = unstored_views(&ks).map_err(OpenError::Store)?;
        let (writer, rx) = mpsc::channel(WRITER_QUEUE);
        let counters = Arc::new(Counters::default());
        let mut commit = GroupCommit {
            db: db.clone(),
            ks: ks.clone(),
            heads: HashMap::new(),
            counters: counters.clone(),
            fresh: fresh.clone(),
            stale,
            view_checkpoint: options.view_checkpoint,
            last_checkpoint: Instant::now(),
            scratch: Vec::new(),
            space: crate::space::SpaceFloor::new(dir, options.min_free_bytes),
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
}

/// What opening one directory needs to know: where, and the memory budget in bytes.
struct Opener<'a> {
    dir: &'a Path,
    budget: u64,
}

impl Opener<'_> {
    /// The engine could not open the database or a keyspace in it.
    fn engine(&self, source: fjall::Error) -> OpenError {
        OpenError::Engine {
            dir: self.dir.to_owned(),
            source: source.into(),
        }
    }

    /// Keyspace options whose memtable takes `1/share` of half the budget (the log the largest
    /// share; the rest is small and rewritten often).
    fn memtable(&self, share: u64) -> KeyspaceCreateOptions {
        let bytes = (self.budget / 2 / share).max(1024 * 1024);
        KeyspaceCreateOptions::default().max_memtable_size(bytes)
    }

    fn keyspace(&self, db: &Database, name: &str, share: u64) -> Result<Keyspace, OpenError> {
        db.keyspace(name, || self.memtable(share))
            .map_err(|e| self.engine(e))
    }

    /// The layout first: a directory is new if it has no log yet, and a new one gets its layout
    /// record (synced) before the log exists, so a crash in between leaves a directory that
    /// opens as new again. A directory of another layout is refused with what to do.
    fn check_layout(&self, db: &Database) -> Result<(), OpenError> {
        let new = !db.keyspace_exists("events");
        let meta = self.keyspace(db, "meta", 64)?;
        match meta.get(KEY_LAYOUT_KEY).map_err(|e| self.engine(e))? {
            Some(v) if *v == [KEY_LAYOUT] => Ok(()),
            None if new => {
                meta.insert(KEY_LAYOUT_KEY, [KEY_LAYOUT])
                    .map_err(|e| self.engine(e))?;
                db.persist(PersistMode::SyncAll).map_err(|e| self.engine(e))
            }
            found => Err(OpenError::KeyLayout {
                dir: self.dir.to_owned(),
                found: found.and_then(|v| v.first().copied()).unwrap_or(1),
                reads: KEY_LAYOUT,
            }),
        }
    }

    /// Every keyspace but `meta`, each with its memory share; `events` tuned for a log.
    fn keyspaces(&self, db: &Database) -> Result<Keyspaces, OpenError> {
        let events = db
            .keyspace("events", || {
                self.memtable(4)
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
            .map_err(|e| self.engine(e))?;
        Ok(Keyspaces {
            events,
            commands: self.keyspace(db, "commands", 8)?,
            snapshots: self.keyspace(db, "snapshots", 8)?,
            views: self.keyspace(db, "views", 8)?,
            by_owner: self.keyspace(db, "by_owner", 32)?,
            stale_views: self.keyspace(db, "stale_views", 64)?,
        })
    }
}

/// The views the last process committed but did not store (its `stale_views` records), marked
/// stale, and the range of those records' keys.
fn unstored_views(ks: &Keyspaces) -> Result<(FreshViews, Range<u64>), StoreError> {
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
    Ok((fresh, stale.unwrap_or_default()))
}
