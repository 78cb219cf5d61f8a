//! Counting what the MongoDB backend sends: one counter per kind of operation, each a network
//! round trip, read as a [`RoundTrips`] snapshot.

use std::sync::atomic::{AtomicU64, Ordering};

/// Operations sent to MongoDB since the store was opened, by kind. Each is one network round
/// trip (a cursor's `getMore` for results past the first batch is not counted).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RoundTrips {
    /// `insert` (one per `insert_many`, however many documents).
    pub inserts: u64,
    /// `find` and `findOne`.
    pub finds: u64,
    /// `aggregate`.
    pub aggregates: u64,
    /// `bulkWrite` (snapshots and views of a whole batch).
    pub bulk_writes: u64,
    /// `update` and `replaceOne` (snapshots and views on servers without `bulkWrite`).
    pub updates: u64,
    /// `delete`.
    pub deletes: u64,
    /// Anything else: `hello`, `createIndexes`, `drop`.
    pub commands: u64,
}

impl RoundTrips {
    pub fn total(&self) -> u64 {
        self.inserts
            + self.finds
            + self.aggregates
            + self.bulk_writes
            + self.updates
            + self.deletes
            + self.commands
    }

    /// Each kind with its count, named as the metric labels them.
    pub fn by_op(&self) -> Vec<(&'static str, u64)> {
        vec![
            ("insert", self.inserts),
            ("find", self.finds),
            ("aggregate", self.aggregates),
            ("bulk_write", self.bulk_writes),
            ("update", self.updates),
            ("delete", self.deletes),
            ("command", self.commands),
        ]
    }

    /// What happened between `earlier` and `self`.
    pub fn since(&self, earlier: &RoundTrips) -> RoundTrips {
        RoundTrips {
            inserts: self.inserts - earlier.inserts,
            finds: self.finds - earlier.finds,
            aggregates: self.aggregates - earlier.aggregates,
            bulk_writes: self.bulk_writes - earlier.bulk_writes,
            updates: self.updates - earlier.updates,
            deletes: self.deletes - earlier.deletes,
            commands: self.commands - earlier.commands,
        }
    }
}

/// The kind of an operation, for [`RoundTrips`].
#[derive(Clone, Copy, Debug)]
pub(super) enum Op {
    Insert,
    Find,
    Aggregate,
    BulkWrite,
    Update,
    Delete,
    Command,
}

/// The counters behind [`RoundTrips`]: one relaxed add per operation.
#[derive(Debug, Default)]
pub(super) struct Counters([AtomicU64; 7]);

impl Counters {
    pub(super) fn count(&self, op: Op) {
        self.0[op as usize].fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn snapshot(&self) -> RoundTrips {
        let n = |op: Op| self.0[op as usize].load(Ordering::Relaxed);
        RoundTrips {
            inserts: n(Op::Insert),
            finds: n(Op::Find),
            aggregates: n(Op::Aggregate),
            bulk_writes: n(Op::BulkWrite),
            updates: n(Op::Update),
            deletes: n(Op::Delete),
            commands: n(Op::Command),
        }
    }
}
