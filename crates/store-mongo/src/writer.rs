//! The MongoDB group-commit writer: one task takes every append waiting and commits the batch in
//! a few round trips, then writes the batch's snapshots and views, then answers.
//!
//! **One batch.** Each job is one caller's chain of appends ([`EventStore::append_many`]: each
//! expects the version the one before leads to). The writer
//! 1. makes sure the version each chain's *first* append expects is a boundary (see the parent
//!    module): known from an earlier read or commit of this store, or else checked for all such
//!    appends of the batch in one query;
//! 2. inserts the first append of every chain in one unordered `insert_many`: one document per
//!    command, so each command is still atomic without a transaction, and a duplicate-key error
//!    on one document fails that command alone;
//! 3. inserts the rest of every chain whose first append committed in one *ordered*
//!    `insert_many`, chain after chain; if a document fails, MongoDB stops there, the rest of its
//!    chain is given up and the documents of other chains after it go in the next ordered insert;
//! 4. for the documents refused (duplicate key, or an expected version that is not a boundary),
//!    asks in one query which command ids were already committed (`Duplicate`), and the others
//!    are a `Conflict`, with the heads read in one aggregation;
//! 5. writes the newest snapshot and client view of every resource committed in the batch in one
//!    `bulkWrite` (or one `update` per collection before MongoDB 8.0);
//! 6. answers every caller.
//!
//! In the usual case (no conflict, no chain longer than one) that is two round trips for the
//! whole batch: one insert and one bulk write.
//!
//! **Why the rest of a chain is not in the unordered insert.** A unique index can refuse a
//! document but never make one depend on another, so in one unordered insert a later append of a
//! chain could commit although an earlier one failed. Two ways it would: the first append is a
//! duplicate (its command committed earlier), so nothing ends at the version the second expects
//! and the second would leave a gap; or another writer won the first append's version with a
//! commit of the same length, so the second lands on top of the winner although it was decided on
//! a state that never existed (a lost update). Inserting the rest only after the first committed,
//! in an ordered insert that stops at the first failure, rules both out: every document the writer
//! inserts expects a boundary, and no later append of a chain is attempted once one has failed.
//!
//! **When the snapshots and views cannot be written** the commits stand (they are durable), but
//! their callers hear the store error (as after a lost reply: a retry finds the commit and is
//! answered as a duplicate), and the writer writes those states with its next batch.

use super::{COMMIT_DOC, CommitDoc, Conn, DUPLICATE_KEY, Op, to_doc};
use crate::driver;
use mongodb::bson::Document;
use mongodb::error::ErrorKind;
use std::collections::{HashMap, HashSet};
use tokio::sync::mpsc;
use warden_core::domain::{ClientResource, ClientSchema, ResourceId, ServerResource};
use warden_core::store::{AppendError, AppendRequest, CommitRecord, StoreError};

pub(super) use warden_core::store::job::AppendJob as Job;

/// Takes jobs until the store is dropped (the queue closes).
pub(super) async fn run(conn: Conn, mut jobs: mpsc::Receiver<Job>) {
    // States committed whose snapshot or view could not be written yet: retried with each batch.
    let mut unwritten: HashMap<ResourceId, ServerResource> = HashMap::new();
    let max_batch = conn.config.max_batch.max(1);
    while let Some(first) = jobs.recv().await {
        let mut appends = first.appends.len();
        let mut batch = vec![first];
        while appends < max_batch {
            match jobs.try_recv() {
                Ok(job) => {
                    appends += job.appends.len();
                    batch.push(job);
                }
                Err(_) => break,
            }
        }
        let (chains, replies): (Vec<_>, Vec<_>) =
            batch.into_iter().map(|j| (j.appends, j.reply)).unzip();
        let outcomes = commit_batch(&conn, &chains, &mut unwritten).await;
        for (reply, outcome) in replies.into_iter().zip(outcomes) {
            // A caller that gave up waiting is no reason to stop.
            let _ = reply.send(outcome);
        }
    }
}

/// Where one append stands while its batch is committed.
enum Fate {
    /// Not attempted yet.
    Pending,
    Committed(CommitRecord),
    /// Refused by a unique index, or its expected version is not a boundary: a duplicate if its
    /// command id is committed, else a conflict.
    Refused,
    Failed(AppendError),
}

/// What became of one document of an `insert_many`.
enum Inserted {
    Yes,
    DuplicateKey,
    /// Not attempted: an ordered insert stopped at an earlier document.
    No,
    Failed(StoreError),
}

/// Commits a batch of chains; returns each chain's outcomes, in order. The steps are numbered
/// in the functions they call.
async fn commit_batch(
    conn: &Conn,
    chains: &[Vec<AppendRequest>],
    unwritten: &mut HashMap<ResourceId, ServerResource>,
) -> Vec<Vec<Result<CommitRecord, AppendError>>> {
    let mut fates: Vec<Vec<Fate>> = chains
        .iter()
        .map(|chain| chain.iter().map(|_| Fate::Pending).collect())
        .collect();
    // A malformed append ends its chain there (what comes before it may still commit).
    for (chain, fates) in chains.iter().zip(&mut fates) {
        if let Some((i, e)) = chain
            .iter()
            .enumerate()
            .find_map(|(i, req)| req.validate().err().map(|e| (i, e)))
        {
            fates[i] = Fate::Failed(e.into());
        }
    }

    check_boundaries(conn, chains, &mut fates).await;
    insert_chains(conn, chains, &mut fates).await;
    let heads = settle_refused(conn, chains, &mut fates).await;
    let written = write_states(conn, chains, &fates, unwritten).await;
    answers(chains, fates, &heads, &written)
}

/// Step 1: the first append of a chain must expect a boundary (a version some commit ended at): the
/// expectations this node does not know as boundaries are looked up at once, and one found
/// nowhere is refused.
async fn check_boundaries(conn: &Conn, chains: &[Vec<AppendRequest>], fates: &mut [Vec<Fate>]) {
    let unknown: Vec<(usize, (ResourceId, u64))> = {
        let known = conn.known();
        chains
            .iter()
            .enumerate()
            .filter(|(c, _)| matches!(fates[*c][0], Fate::Pending))
            .map(|(c, chain)| (c, (chain[0].resource_id, chain[0].expected_version)))
            .filter(|(_, (id, v))| !known.is_boundary(*id, *v))
            .collect()
    };
    if !unknown.is_empty() {
        let pairs: Vec<(ResourceId, u64)> = unknown.iter().map(|(_, p)| *p).collect();
        match conn.boundaries(&pairs).await {
            Ok(found) => {
                let found: HashSet<(ResourceId, u64)> = found.into_iter().collect();
                for (c, pair) in &unknown {
                    if !found.contains(pair) {
                        fates[*c][0] = Fate::Refused;
                    }
                }
            }
            Err(e) => {
                for (c, _) in &unknown {
                    fates[*c][0] = Fate::Failed(e.clone().into());
                }
            }
        }
    }
}

/// Steps 2 and 3: the first append of every chain in one unordered insert, then the rest of each chain
/// whose prefix committed, ordered, until nothing is left to try.
async fn insert_chains(conn: &Conn, chains: &[Vec<AppendRequest>], fates: &mut [Vec<Fate>]) {
    let firsts: Vec<(usize, usize)> = (0..chains.len())
        .filter(|c| matches!(fates[*c][0], Fate::Pending))
        .map(|c| (c, 0))
        .collect();
    insert(conn, chains, fates, &firsts, false).await;

    // 3. The rest of each chain whose prefix committed, ordered, until nothing is left to try.
    loop {
        let mut rest = Vec::new();
        for (c, fates) in fates.iter().enumerate() {
            let committed = fates
                .iter()
                .take_while(|f| matches!(f, Fate::Committed(_)))
                .count();
            if committed > 0 {
                rest.extend(
                    (committed..fates.len())
                        .take_while(|i| matches!(fates[*i], Fate::Pending))
                        .map(|i| (c, i)),
                );
            }
        }
        if rest.is_empty() {
            break;
        }
        insert(conn, chains, fates, &rest, true).await;
    }
}

/// Step 4: refused appends: duplicates (answered with the original commit) or conflicts. Returns the
/// stored heads of the chains with a refusal, for the conflict answers.
async fn settle_refused(
    conn: &Conn,
    chains: &[Vec<AppendRequest>],
    fates: &mut [Vec<Fate>],
) -> Result<HashMap<ResourceId, u64>, StoreError> {
    let refused: Vec<(usize, usize)> = fates
        .iter()
        .enumerate()
        .flat_map(|(c, f)| {
            f.iter()
                .enumerate()
                .filter(|(_, f)| matches!(f, Fate::Refused))
                .map(move |(i, _)| (c, i))
        })
        .collect();
    let command_ids: Vec<_> = refused
        .iter()
        .map(|(c, i)| chains[*c][*i].command_id)
        .collect();
    let duplicates = conn.find_commands(&command_ids).await;
    // Only refusals are answered with a head: an append that failed (so far only with a store
    // error) passes that error on to the rest of its chain.
    let mut need_head: Vec<ResourceId> = Vec::new();
    for (c, chain) in chains.iter().enumerate() {
        if fates[c].iter().any(|f| matches!(f, Fate::Refused)) {
            need_head.push(chain[0].resource_id);
        }
    }
    need_head.sort_unstable();
    need_head.dedup();
    let heads = conn.heads(&need_head).await;
    for (c, i) in refused {
        let req = &chains[c][i];
        fates[c][i] = match &duplicates {
            Err(e) => Fate::Failed(e.clone().into()),
            Ok(found) => match found.get(&req.command_id) {
                Some(original) => Fate::Failed(AppendError::Duplicate(*original)),
                None => Fate::Failed(conflict(req, &heads)),
            },
        };
    }

    heads
}

/// Step 5: the newest state of every resource committed, as snapshot and view, before answering;
/// what could not be written waits in `unwritten` for the next batch.
async fn write_states(
    conn: &Conn,
    chains: &[Vec<AppendRequest>],
    fates: &[Vec<Fate>],
    unwritten: &mut HashMap<ResourceId, ServerResource>,
) -> Result<(), StoreError> {
    let mut states = std::mem::take(unwritten);
    for (chain, fates) in chains.iter().zip(fates) {
        for (req, fate) in chain.iter().zip(fates) {
            if matches!(fate, Fate::Committed(_)) {
                let newer = states
                    .get(&req.resource_id)
                    .is_none_or(|s| s.version < req.state.version);
                if newer {
                    states.insert(req.resource_id, req.state.clone());
                }
            }
        }
    }
    let mut written = Ok(());
    if !states.is_empty() {
        let snapshots: Vec<ServerResource> = states.values().cloned().collect();
        let views: Vec<ClientResource> =
            snapshots.iter().map(ClientResource::from_server).collect();
        written = conn.write_newer(&snapshots, &views).await;
        match &written {
            Ok(()) => {
                let mut known = conn.known();
                for view in &views {
                    known.note_view(view.id, view.version);
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, resources = states.len(), "snapshots and views not written; will retry");
                *unwritten = states;
            }
        }
    }

    written
}

/// Step 6: the answers, chain by chain: after a chain's first failure, the rest are given up.
fn answers(
    chains: &[Vec<AppendRequest>],
    fates: Vec<Vec<Fate>>,
    heads: &Result<HashMap<ResourceId, u64>, StoreError>,
    written: &Result<(), StoreError>,
) -> Vec<Vec<Result<CommitRecord, AppendError>>> {
    chains
        .iter()
        .zip(fates)
        .map(|(chain, fates)| {
            let mut first_failure: Option<Result<CommitRecord, AppendError>> = None;
            chain
                .iter()
                .zip(fates)
                .map(|(req, fate)| {
                    if let Some(failure) = &first_failure {
                        // Given up after an earlier append of the chain failed.
                        return match failure {
                            Err(AppendError::Store(e)) => Err(e.clone().into()),
                            _ => Err(conflict(req, heads)),
                        };
                    }
                    let outcome = match fate {
                        Fate::Committed(record) => match written {
                            Ok(()) => Ok(record),
                            Err(e) => Err(e.clone().into()),
                        },
                        Fate::Failed(e) => Err(e),
                        Fate::Pending | Fate::Refused => Err(StoreError::NoOutcome(
                            "the MongoDB writer left an append unsettled",
                        )
                        .into()),
                    };
                    if let Err(e) = &outcome {
                        first_failure = Some(Err(match e {
                            AppendError::Store(e) => AppendError::Store(e.clone()),
                            AppendError::Conflict { expected, actual } => AppendError::Conflict {
                                expected: *expected,
                                actual: *actual,
                            },
                            AppendError::Duplicate(r) => AppendError::Duplicate(*r),
                        }));
                    }
                    outcome
                })
                .collect()
        })
        .collect()
}

/// The conflict answer for `req`, with the stored head if it could be read.
fn conflict(
    req: &AppendRequest,
    heads: &Result<HashMap<ResourceId, u64>, StoreError>,
) -> AppendError {
    match heads {
        Ok(heads) => AppendError::Conflict {
            expected: req.expected_version,
            actual: heads.get(&req.resource_id).copied().unwrap_or(0),
        },
        Err(e) => e.clone().into(),
    }
}

/// Inserts the appends at `links` (chain, position) in one `insert_many` and records their fates.
async fn insert(
    conn: &Conn,
    chains: &[Vec<AppendRequest>],
    fates: &mut [Vec<Fate>],
    links: &[(usize, usize)],
    ordered: bool,
) {
    if links.is_empty() {
        return;
    }
    let now = warden_core::clock::Clock::now(&warden_core::clock::SystemClock).millis();
    let mut docs: Vec<Document> = Vec::with_capacity(links.len());
    let mut records = Vec::with_capacity(links.len());
    for (c, i) in links {
        let req = &chains[*c][*i];
        let record = CommitRecord {
            resource_id: req.resource_id,
            command_id: req.command_id,
            first_version: req.expected_version + 1,
            last_version: req
                .events
                .last()
                .map_or(req.expected_version, |e| e.version),
        };
        let doc = to_doc(
            COMMIT_DOC,
            &CommitDoc {
                command_id: req.command_id,
                resource_id: req.resource_id,
                first_version: record.first_version,
                last_version: record.last_version,
                node: conn.node_id.clone(),
                committed_at: now,
                events: req.events.clone(),
            },
        );
        match doc {
            Ok(doc) => {
                docs.push(doc);
                records.push(Some(record));
            }
            Err(e) => {
                fates[*c][*i] = Fate::Failed(e.into());
                records.push(None);
            }
        }
    }
    let links: Vec<(usize, usize, CommitRecord)> = links
        .iter()
        .zip(records)
        .filter_map(|((c, i), r)| r.map(|r| (*c, *i, r)))
        .collect();
    if links.is_empty() {
        return;
    }
    let outcomes = insert_many(conn, docs, ordered).await;
    let mut known = conn.known();
    for ((c, i, record), outcome) in links.into_iter().zip(outcomes) {
        fates[c][i] = match outcome {
            Inserted::Yes => {
                known.note_head(record.resource_id, record.last_version);
                Fate::Committed(record)
            }
            Inserted::DuplicateKey => Fate::Refused,
            Inserted::No => Fate::Pending,
            Inserted::Failed(e) => Fate::Failed(e.into()),
        };
    }
}

/// One `insert_many` and what became of each document.
async fn insert_many(conn: &Conn, docs: Vec<Document>, ordered: bool) -> Vec<Inserted> {
    let n = docs.len();
    let all_failed = |e: StoreError| (0..n).map(|_| Inserted::Failed(e.clone())).collect();
    let result = match conn
        .bounded_raw(Op::Insert, conn.commits.insert_many(docs).ordered(ordered))
        .await
    {
        Err(e) => return all_failed(e),
        Ok(result) => result,
    };
    let e = match result {
        Ok(_) => return (0..n).map(|_| Inserted::Yes).collect(),
        Err(e) => e,
    };
    let ErrorKind::InsertMany(m) = e.kind.as_ref() else {
        // Includes a lost reply: the documents may or may not be in, so each is an error, and a
        // retry with the same command id will find what was.
        return all_failed(driver(e));
    };
    if m.write_concern_error.is_some() {
        // Written, but not as durably as promised: not acknowledged.
        return all_failed(driver(e));
    }
    let mut out: Vec<Inserted> = (0..n).map(|_| Inserted::Yes).collect();
    let errors = m.write_errors.as_deref().unwrap_or_default();
    for w in errors {
        if let Some(slot) = out.get_mut(w.index) {
            *slot = if w.code == DUPLICATE_KEY {
                Inserted::DuplicateKey
            } else {
                Inserted::Failed(StoreError::WriteFailed {
                    store: "MongoDB",
                    detail: w.message.clone(),
                })
            };
        }
    }
    if let Some(stop) = errors.iter().map(|w| w.index).min()
        && ordered
    {
        for slot in out.iter_mut().skip(stop + 1) {
            *slot = Inserted::No;
        }
    }
    out
}
