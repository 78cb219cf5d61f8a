// Warden patch (see WARDEN-PATCH.md at the crate root): not part of upstream lsm-tree 3.1.10.

//! Frees retired super versions on a background thread.
//!
//! A super version that the version history lets go of may hold the last reference to a flushed
//! memtable (freeing a skiplist of hundreds of thousands of entries) or to a compacted-away table
//! (whose drop unlinks the file, which on a filesystem mounted with `discard` waits for the
//! device). `SuperVersions::maintenance` runs under the tree's version-history write lock, which
//! every write to the tree needs for a moment, so freeing there stalled all writers for as long as
//! it took (100-600 ms measured). Here the retired versions are handed to one thread that drops
//! them, and [`drain`] lets a closing tree wait until every deferred drop is done (so a deleted
//! table's file is gone before the tree can be opened again and reuse its id).

use crate::version::SuperVersion;
use std::sync::{mpsc, OnceLock};

enum Job {
    Drop(SuperVersion),
    Barrier(mpsc::SyncSender<()>),
}

fn reaper() -> Option<&'static mpsc::Sender<Job>> {
    static REAPER: OnceLock<Option<mpsc::Sender<Job>>> = OnceLock::new();
    REAPER
        .get_or_init(|| {
            let (tx, rx) = mpsc::channel::<Job>();
            std::thread::Builder::new()
                .name("lsm-tree-reaper".into())
                .spawn(move || {
                    for job in rx {
                        match job {
                            Job::Drop(version) => drop(version),
                            Job::Barrier(done) => {
                                let _ = done.send(());
                            }
                        }
                    }
                })
                .ok()
                .map(|_| tx)
        })
        .as_ref()
}

/// Drops `version` on the reaper thread (or here, if there is none).
pub fn drop_later(version: SuperVersion) {
    if let Some(tx) = reaper() {
        if let Err(mpsc::SendError(Job::Drop(version))) = tx.send(Job::Drop(version)) {
            drop(version);
        }
    } else {
        drop(version);
    }
}

/// Waits until every version handed to [`drop_later`] before this call has been dropped.
pub fn drain() {
    let Some(tx) = reaper() else {
        return;
    };
    let (done_tx, done_rx) = mpsc::sync_channel(1);
    if tx.send(Job::Barrier(done_tx)).is_ok() {
        let _ = done_rx.recv();
    }
}
