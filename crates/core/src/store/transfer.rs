//! Moving a log between stores: `warden export` writes every commit as one JSON line, `warden
//! import` appends them to another store. Works on any [`EventStore`], so data moves between the
//! embedded store and MongoDB, and between versions of the embedded layout.
//!
//! One line is one command's commit: `{"format":"warden-commit/1","resource_id":…,"command_id":…,
//! "first_version":…,"events":[…]}`, each event as the audit trail shows it. Lines come resource
//! by resource (ids in ascending order), each resource's commits in version order, which is all
//! an import needs: it appends each commit at the version before its first event, so the target
//! holds exactly the source's log, with the same versions and command ids.

use crate::domain::{CommandId, EventEnvelope, ResourceId, ServerResource, replay};
use crate::store::{AppendError, AppendRequest, EventStore, StoreError};
use serde::{Deserialize, Serialize};
use std::io::{BufRead, Write};
use thiserror::Error;

/// The `format` of every exported line.
pub const COMMIT_FORMAT: &str = "warden-commit/1";
/// Events read from the source per call while exporting.
const EXPORT_PAGE: usize = 4096;
/// Commits of one resource appended per call while importing (one group commit each).
const IMPORT_CHAIN: usize = 512;

/// One exported line: a command's commit.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CommitLine {
    pub format: String,
    pub resource_id: ResourceId,
    pub command_id: CommandId,
    pub first_version: u64,
    pub events: Vec<EventEnvelope>,
}

/// What an export or an import went through.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TransferStats {
    pub resources: u64,
    pub commits: u64,
    pub events: u64,
    /// Import only: commits the target already held (an import run again resumes).
    pub already_there: u64,
}

#[derive(Debug, Error)]
pub enum TransferError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot write the export: {0}")]
    Write(#[source] std::io::Error),
    #[error("cannot read line {line}: {source}")]
    Read {
        line: u64,
        #[source]
        source: std::io::Error,
    },
    #[error("line {line} is not a commit ({COMMIT_FORMAT}): {reason}")]
    BadLine { line: u64, reason: String },
    #[error(
        "resource {resource} in the target does not match the import at version {version}: \
         {detail}"
    )]
    Diverged {
        resource: ResourceId,
        version: u64,
        detail: String,
    },
}

/// Writes every commit of `store` to `out`, one JSON line each.
pub async fn export(
    store: &dyn EventStore,
    out: &mut dyn Write,
) -> Result<TransferStats, TransferError> {
    let mut stats = TransferStats::default();
    let mut ids = store.resource_ids().await?;
    ids.sort();
    for id in ids {
        stats.resources += 1;
        let mut commit: Option<CommitLine> = None;
        let mut after = 0;
        loop {
            let page = store.events(id, after, EXPORT_PAGE).await?;
            let Some(last) = page.last() else { break };
            after = last.version;
            for event in page {
                stats.events += 1;
                match &mut commit {
                    Some(c) if c.command_id == event.command_id => c.events.push(event),
                    _ => {
                        if let Some(done) = commit.take() {
                            write_line(out, &done)?;
                            stats.commits += 1;
                        }
                        commit = Some(CommitLine {
                            format: COMMIT_FORMAT.into(),
                            resource_id: id,
                            command_id: event.command_id,
                            first_version: event.version,
                            events: vec![event],
                        });
                    }
                }
            }
        }
        if let Some(done) = commit {
            write_line(out, &done)?;
            stats.commits += 1;
        }
    }
    out.flush().map_err(TransferError::Write)?;
    Ok(stats)
}

fn write_line(out: &mut dyn Write, line: &CommitLine) -> Result<(), TransferError> {
    serde_json::to_writer(&mut *out, line)
        .map_err(|e| TransferError::Write(std::io::Error::other(e)))?;
    out.write_all(b"\n").map_err(TransferError::Write)
}

/// Appends every commit read from `input` to `store`. A commit the target already holds (same
/// command id at the same place) is skipped, so an interrupted import can simply be run again;
/// anything else already there at those versions is an error, and nothing past it is written.
pub async fn import(
    store: &dyn EventStore,
    input: &mut dyn BufRead,
) -> Result<TransferStats, TransferError> {
    let mut stats = TransferStats::default();
    let mut current: Option<ResourceId> = None;
    let mut state: Option<ServerResource> = None;
    let mut chain: Vec<AppendRequest> = Vec::new();
    let mut number = 0;
    let mut text = String::new();
    loop {
        text.clear();
        number += 1;
        let read = input
            .read_line(&mut text)
            .map_err(|source| TransferError::Read {
                line: number,
                source,
            })?;
        if read == 0 {
            break;
        }
        if text.trim().is_empty() {
            continue;
        }
        let line = parse_line(&text, number)?;
        if current != Some(line.resource_id) {
            flush(store, &mut chain, &mut stats).await?;
            current = Some(line.resource_id);
            state = None;
            stats.resources += 1;
        }
        let next = replay(state.take(), &line.events).ok_or_else(|| TransferError::BadLine {
            line: number,
            reason: "its events do not lead to a resource (no creation first?)".into(),
        })?;
        stats.events += line.events.len() as u64;
        chain.push(AppendRequest {
            resource_id: line.resource_id,
            expected_version: line.first_version - 1,
            command_id: line.command_id,
            events: line.events,
            state: next.clone(),
        });
        state = Some(next);
        if chain.len() >= IMPORT_CHAIN {
            flush(store, &mut chain, &mut stats).await?;
        }
    }
    flush(store, &mut chain, &mut stats).await?;
    Ok(stats)
}

fn parse_line(text: &str, line: u64) -> Result<CommitLine, TransferError> {
    let bad = |reason: String| TransferError::BadLine { line, reason };
    let commit: CommitLine = serde_json::from_str(text).map_err(|e| bad(e.to_string()))?;
    if commit.format != COMMIT_FORMAT {
        return Err(bad(format!("unknown format {:?}", commit.format)));
    }
    let well_formed = !commit.events.is_empty()
        && commit.first_version >= 1
        && commit
            .events
            .iter()
            .zip(commit.first_version..)
            .all(|(e, v)| {
                e.version == v
                    && e.resource_id == commit.resource_id
                    && e.command_id == commit.command_id
            });
    if !well_formed {
        return Err(bad(
            "events must be of its resource and command, numbered from first_version".into(),
        ));
    }
    Ok(commit)
}

/// Appends `chain` (commits of one resource, in order), skipping those already there.
async fn flush(
    store: &dyn EventStore,
    chain: &mut Vec<AppendRequest>,
    stats: &mut TransferStats,
) -> Result<(), TransferError> {
    while !chain.is_empty() {
        let sent = std::mem::take(chain);
        let outcomes = store.append_many(sent.clone()).await;
        let mut resend_from = None;
        for (i, (req, outcome)) in sent.iter().zip(outcomes).enumerate() {
            match outcome {
                Ok(_) => stats.commits += 1,
                Err(AppendError::Duplicate(rec))
                    if rec.resource_id == req.resource_id
                        && rec.first_version == req.expected_version + 1 =>
                {
                    // Already imported: the chain broke here, so send the rest again.
                    stats.already_there += 1;
                    resend_from = Some(i + 1);
                    break;
                }
                Err(e) => {
                    return Err(TransferError::Diverged {
                        resource: req.resource_id,
                        version: req.expected_version + 1,
                        detail: e.to_string(),
                    });
                }
            }
        }
        if let Some(from) = resend_from {
            *chain = sent.into_iter().skip(from).collect();
        }
    }
    Ok(())
}
