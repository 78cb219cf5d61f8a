//! The free-space floor: below it the writer refuses new appends (a definite refusal, nothing
//! written) instead of finding the full disk by failing mid-batch, and takes them again once
//! space is back. Reads go on either way.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use warden_core::store::StoreError;

/// How long a reading of the free space is trusted: a disk fills far slower than this lets
/// appends through (at 100 k commands/s of ~100 B, about 1 MB per interval).
const RECHECK_EVERY: Duration = Duration::from_millis(100);

/// Bytes free to an unprivileged writer on the file system holding `dir`.
pub fn free_bytes(dir: &Path) -> std::io::Result<u64> {
    let stat = rustix::fs::statvfs(dir)?;
    Ok(stat.f_bavail.saturating_mul(stat.f_frsize))
}

/// The writer's view of the floor: the last reading, and whether appends are refused.
pub(crate) struct SpaceFloor {
    dir: PathBuf,
    floor: u64,
    checked: Option<Instant>,
    free: u64,
    /// Appends are refused (logged once when it starts and once when it ends).
    refusing: bool,
}

impl SpaceFloor {
    pub(crate) fn new(dir: &Path, floor: u64) -> Self {
        Self {
            dir: dir.to_owned(),
            floor,
            checked: None,
            free: u64::MAX,
            refusing: false,
        }
    }

    /// `Err` while the free space is below the floor.
    pub(crate) fn check(&mut self) -> Result<(), StoreError> {
        if self.floor == 0 {
            return Ok(());
        }
        if self.checked.is_none_or(|at| at.elapsed() >= RECHECK_EVERY) {
            self.checked = Some(Instant::now());
            match free_bytes(&self.dir) {
                Ok(free) => self.free = free,
                // Unknown: let the engine's own errors speak rather than refuse on a guess.
                Err(e) => {
                    tracing::warn!(error = %e, dir = %self.dir.display(), "cannot read the free space");
                    self.free = u64::MAX;
                }
            }
            let below = self.free < self.floor;
            if below != self.refusing {
                self.refusing = below;
                if below {
                    tracing::error!(
                        free_bytes = self.free,
                        floor_bytes = self.floor,
                        dir = %self.dir.display(),
                        "writes refused: free space under the data directory is below the floor \
                         (--min-free-mb); free space to take writes again"
                    );
                } else {
                    tracing::warn!(
                        free_bytes = self.free,
                        floor_bytes = self.floor,
                        "writes taken again: free space is back above the floor"
                    );
                }
            }
        }
        if self.refusing {
            Err(StoreError::NoSpace {
                free_bytes: self.free,
                floor_bytes: self.floor,
            })
        } else {
            Ok(())
        }
    }
}
