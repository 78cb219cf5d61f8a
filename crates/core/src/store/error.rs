//! Why a store operation failed: one error enum per family of operations (opening a store,
//! appending, any other read or write), one variant per cause, each keeping its source.
//!
//! The `Display` text of every variant carries its cause's text too, because the server logs
//! errors with `%` (one line an operator can read); [`std::error::Error::source`] still gives the
//! typed cause to code that walks the chain.

use crate::domain::{CommandId, ResourceId};
use std::fmt;
use std::ops::Deref;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use thiserror::Error;

use super::CommitRecord;

/// A lower-level error kept as the source of a [`StoreError`], shared because a [`StoreError`]
/// is cloned (one failed group commit is the answer of every append in it). It derefs to the
/// error and is not an error itself, so [`source`](std::error::Error::source) yields the error,
/// not an `Arc` around it, and a caller can downcast it.
pub struct Shared<E: ?Sized>(Arc<E>);

impl<E: std::error::Error + Send + Sync + 'static> From<E>
    for Shared<dyn std::error::Error + Send + Sync>
{
    fn from(e: E) -> Self {
        Shared(Arc::new(e))
    }
}

/// A source of any type (a decoder's error, a malformed key …).
pub type Cause = Shared<dyn std::error::Error + Send + Sync>;

impl<E: ?Sized> Deref for Shared<E> {
    type Target = E;
    fn deref(&self) -> &E {
        &self.0
    }
}

impl<E: ?Sized> Clone for Shared<E> {
    fn clone(&self) -> Self {
        Shared(self.0.clone())
    }
}

impl<E: ?Sized + fmt::Display> fmt::Display for Shared<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl<E: ?Sized + fmt::Debug> fmt::Debug for Shared<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Why an append did not happen. Each case asks for a different reaction.
#[derive(Debug, Error)]
pub enum AppendError {
    /// Another writer got there first: reload and decide again.
    #[error("version conflict: expected {expected}, stored head is {actual}")]
    Conflict { expected: u64, actual: u64 },
    /// This command id was already committed: answer with the original outcome.
    #[error("command {} was already applied", .0.command_id)]
    Duplicate(CommitRecord),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<MalformedAppend> for AppendError {
    fn from(e: MalformedAppend) -> Self {
        AppendError::Store(e.into())
    }
}

/// The storage itself failed, or was asked for something no store may do. The detail is for the
/// server log; clients get a code (`unavailable`, whatever the variant).
#[derive(Clone, Debug, Error)]
pub enum StoreError {
    /// The backend's engine or driver failed to read, write or commit: the embedded engine
    /// (fjall), or the MongoDB driver (the server is unreachable, refused the operation, or the
    /// reply was lost, so a write may or may not have happened). `source` is the engine's error.
    #[error("{store}: {source}")]
    Engine {
        /// Which backend, for the log (`embedded store engine`, `MongoDB`).
        store: &'static str,
        #[source]
        source: Cause,
    },
    /// The backend answered, but reported write errors other than a duplicate key (which the
    /// store handles itself), or a write concern it could not meet; the text is the server's.
    #[error("{store} write failed: {detail}")]
    WriteFailed { store: &'static str, detail: String },
    /// The backend did not answer within its time bound (a write may or may not have happened).
    #[error("{store} did not answer within {after:?}")]
    Timeout {
        /// Which backend, for the log (`MongoDB`).
        store: &'static str,
        after: Duration,
    },
    /// A stored record cannot be read back: what lies under its key is not what Warden wrote.
    #[error("corrupt {what}: {source}")]
    Corrupt {
        /// The kind of record (`event`, `snapshot`, `commit document`, …).
        what: &'static str,
        #[source]
        source: Cause,
    },
    /// A record could not be put into its stored form (nothing was written).
    #[error("cannot store {what}: {source}")]
    Encode {
        what: &'static str,
        #[source]
        source: Cause,
    },
    /// Records that are each readable but contradict one another (a command record pointing at
    /// events the log does not hold).
    #[error("inconsistent log: {0}")]
    Inconsistent(String),
    /// A caller's bug, refused before anything is written: see [`AppendRequest::validate`].
    ///
    /// [`AppendRequest::validate`]: super::AppendRequest::validate
    #[error("malformed append: {0}")]
    Malformed(#[from] MalformedAppend),
    /// The store is closing and takes no more appends; nothing was written.
    #[error("the store is closing")]
    Closed,
    /// The free space under the embedded store's data directory is below its floor
    /// (`--min-free-mb`): appends are refused, nothing was written, until space is freed.
    #[error(
        "{free_bytes} bytes free under the data directory, below the floor of {floor_bytes} \
         (--min-free-mb): writes are refused until space is freed"
    )]
    NoSpace { free_bytes: u64, floor_bytes: u64 },
    /// The store failed (the cause) and is being reopened from what is on disk; nothing was
    /// done. Retry: it takes requests again once reopened.
    #[error("the store failed and is being reopened: {0}")]
    Recovering(String),
    /// An append was handed to the writer but no outcome came back (it stopped, or answered
    /// fewer appends than it was given): whether it committed is unknown, and a resend with the
    /// same command id tells.
    #[error("no outcome for an append: {0}")]
    NoOutcome(&'static str),
}

impl StoreError {
    /// A record of kind `what` that cannot be read back, because of `source`.
    pub fn corrupt(
        what: &'static str,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        StoreError::Corrupt {
            what,
            source: Shared(Arc::new(source)),
        }
    }

    /// A record of kind `what` that cannot be put into its stored form, because of `source`.
    pub fn encode(
        what: &'static str,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        StoreError::Encode {
            what,
            source: Shared(Arc::new(source)),
        }
    }
}

impl StoreError {
    /// The engine or driver of backend `store` failed, because of `source`.
    pub fn engine(
        store: &'static str,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        StoreError::Engine {
            store,
            source: Shared(Arc::new(source)),
        }
    }
}

/// What is wrong with an [`AppendRequest`](super::AppendRequest) that no store may write: a bug in
/// the caller, not a fault of the storage.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum MalformedAppend {
    #[error("an append needs at least one event")]
    NoEvents,
    #[error("events of command {command_id} are not stamped {first}.. for resource {resource_id}")]
    Misnumbered {
        command_id: CommandId,
        resource_id: ResourceId,
        /// The version the first event should carry.
        first: u64,
    },
    #[error(
        "the state sent with command {command_id} is {state_id} at version {state_version}, not \
         {resource_id} at {version}"
    )]
    StateMismatch {
        command_id: CommandId,
        resource_id: ResourceId,
        /// The version the events lead to.
        version: u64,
        state_id: ResourceId,
        state_version: u64,
    },
}

/// Why a store could not be opened.
#[derive(Debug, Error)]
pub enum OpenError {
    /// The directory holds Warden's old, redb-based layout, which this version does not read.
    #[error(
        "{} holds a data directory in Warden's old redb layout ({file}), which this version no \
         longer reads. Move its data with `warden export --data-dir {} > log.jsonl` run by a \
         build that still reads it (the last one on redb), then `warden import --data-dir NEW_DIR \
         < log.jsonl` with this one (docs/storage.md, \"Old layout\"); or point --data-dir at an \
         empty directory.",
        dir.display(),
        dir.display()
    )]
    OldLayout { dir: PathBuf, file: &'static str },
    /// The directory's keys are laid out differently from what this version reads: layout 1
    /// (an older version's) or one a newer version wrote.
    #[error(
        "{} holds a data directory in Warden's key layout {found}, and this version reads layout \
         {reads} only. Move its data with `warden export --data-dir {} > log.jsonl` run by the \
         build that wrote it (or any build that reads that layout), then `warden import \
         --data-dir NEW_DIR < log.jsonl` with this one (docs/storage.md, \"Key layouts\"); or \
         point --data-dir at an empty directory.",
        dir.display(),
        dir.display()
    )]
    KeyLayout { dir: PathBuf, found: u8, reads: u8 },
    /// Another process (a running server, or `warden export`) has the directory open: one data
    /// directory is one server's at a time.
    #[error(
        "{} is in use by another Warden process (a data directory belongs to one server at a \
         time): stop that process, or point --data-dir at another directory",
        dir.display()
    )]
    InUse { dir: PathBuf },
    #[error("cannot create {}: {source}", dir.display())]
    CreateDir {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The embedded engine could not open its database or a keyspace in it.
    #[error("cannot open {}: {source}", dir.display())]
    Engine {
        dir: PathBuf,
        #[source]
        source: Cause,
    },
    #[error("cannot start the group-commit writer thread: {0}")]
    WriterThread(#[source] std::io::Error),
    /// A MongoDB URI was given to a build without the MongoDB backend.
    #[error("this build has no MongoDB support (built without the `mongodb` feature)")]
    NoMongoSupport,
    #[error("bad MongoDB URI: {0}")]
    MongoUri(#[source] Cause),
    /// MongoDB did not answer the first command (or answered it with an error).
    #[error("MongoDB at {uri} is unreachable: {source}")]
    MongoUnreachable {
        uri: String,
        #[source]
        source: StoreError,
    },
    /// Opened, but the set-up after it (such as creating indexes) failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// For `map_err`: a record of kind `what` that fails to decode is corrupt.
pub fn corrupt<E: std::error::Error + Send + Sync + 'static>(
    what: &'static str,
) -> impl FnOnce(E) -> StoreError {
    move |e| StoreError::corrupt(what, e)
}

/// For `map_err`: a record of kind `what` that fails to encode cannot be stored.
pub fn encode<E: std::error::Error + Send + Sync + 'static>(
    what: &'static str,
) -> impl FnOnce(E) -> StoreError {
    move |e| StoreError::encode(what, e)
}
