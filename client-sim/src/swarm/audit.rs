//! The final read: every resource the ledger knows, its state and full history, through a few
//! service connections (a service reads anyone's resources in the owner view).

use crate::check::{FinalResource, HistoryRecord};
use crate::tokens::TokenKeys;
use futures::StreamExt;
use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;
use thiserror::Error;
use warden_client::{Client, ClientError};
use warden_protocol::{ErrorCode, ResourceId, Role};

/// Service connections used for the audit.
const AUDITORS: usize = 16;
/// Reads in flight at once across them.
const IN_FLIGHT: usize = 128;
/// Events asked per history page (the server's cap).
const PAGE: u32 = 1000;
/// Retries of a read refused with `rate_limited`.
const RATE_LIMIT_RETRIES: u32 = 50;

#[derive(Debug, Error)]
pub enum AuditError {
    #[error(transparent)]
    Connect(#[from] ClientError),
    #[error("reading {id}: {source}")]
    Read {
        id: ResourceId,
        #[source]
        source: ClientError,
    },
}

/// Reads the final state and history of `ids`. A resource the server does not know is left out
/// of the map (the check then reports it if anything on it was acknowledged).
pub async fn read_final(
    url: &str,
    keys: &TokenKeys,
    ids: &[ResourceId],
) -> Result<BTreeMap<ResourceId, FinalResource>, AuditError> {
    let mut clients = Vec::with_capacity(AUDITORS);
    for i in 0..AUDITORS.min(ids.len().max(1)) {
        let token = crate::tokens::mint(keys, &format!("client-sim-auditor-{i}"), Role::Service);
        clients.push(Client::connect(url, &token).await?);
    }
    let clients = &clients;
    let results: Vec<_> = futures::stream::iter(ids.iter().enumerate())
        .map(|(i, id)| async move { (*id, read_one(&clients[i % clients.len()], *id).await) })
        .buffer_unordered(IN_FLIGHT)
        .collect()
        .await;
    let mut out = BTreeMap::new();
    for (id, r) in results {
        if let Some(fin) = r.map_err(|source| AuditError::Read { id, source })? {
            out.insert(id, fin);
        }
    }
    Ok(out)
}

/// One read, retried while the server says `rate_limited`.
async fn ask<T, F>(mut read: impl FnMut() -> F) -> Result<T, ClientError>
where
    F: Future<Output = Result<T, ClientError>>,
{
    for attempt in 0..RATE_LIMIT_RETRIES {
        match read().await {
            Err(ClientError::Refused {
                code: ErrorCode::RateLimited,
                ..
            }) => {
                tokio::time::sleep(Duration::from_millis(20 * u64::from(attempt + 1))).await;
            }
            other => return other,
        }
    }
    Err(ClientError::Refused {
        code: ErrorCode::RateLimited,
        message: "still rate limited after retries".into(),
    })
}

/// Attempts to let a lagging read model catch up with the event log.
const CATCH_UP_POLLS: u32 = 100;

/// The history is read from the event log (the truth); `get` may come from the read model, a
/// projection that can lag a moment behind, so it is polled until it shows the log's version.
async fn read_one(client: &Client, id: ResourceId) -> Result<Option<FinalResource>, ClientError> {
    let mut history = Vec::new();
    read_history(client, id, &mut history).await?;
    let mut polls = 0;
    loop {
        let view = match ask(|| client.get(id)).await {
            Ok(view) => view,
            Err(ClientError::Refused {
                code: ErrorCode::NotFound,
                ..
            }) if history.is_empty() => return Ok(None),
            Err(e) => return Err(e),
        };
        let head = history.last().map_or(0, |h: &HistoryRecord| h.version);
        if view.version > head {
            read_history(client, id, &mut history).await?;
            continue;
        }
        polls += 1;
        if view.version == head || polls >= CATCH_UP_POLLS {
            return Ok(Some(FinalResource {
                amount: view.amount,
                version: view.version,
                regen_milli: view.regen_milli,
                history: Some(history),
            }));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Appends the events after the last one in `history`, page by page.
async fn read_history(
    client: &Client,
    id: ResourceId,
    history: &mut Vec<HistoryRecord>,
) -> Result<(), ClientError> {
    loop {
        let after = history.last().map_or(0, |h| h.version);
        let events = match ask(|| client.history(id, after, Some(PAGE))).await {
            Ok(events) => events,
            Err(ClientError::Refused {
                code: ErrorCode::NotFound,
                ..
            }) => return Ok(()),
            Err(e) => return Err(e),
        };
        let full = events.len() as u32 >= PAGE;
        history.extend(events.into_iter().map(|e| HistoryRecord {
            version: e.version,
            event_type: e.event_type,
            command_id: e.command_id,
        }));
        if !full {
            return Ok(());
        }
    }
}
