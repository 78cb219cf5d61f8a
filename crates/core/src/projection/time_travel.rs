//! Time travel: a resource's state at a past version or instant, rebuilt by folding its event log.
//!
//! Replay never reads a clock (events record their results), so the state at version N is exactly
//! `apply` over events 1..=N. The state at an instant T is the state after the last event at or
//! before T, brought forward to T the way the rules would see it then: regeneration accrued up to
//! T and a lock whose expiry had passed by T no longer held.

use crate::domain::{EventEnvelope, ServerResource, Timestamp, accrue, apply};
use crate::store::{EventStore, StoreError};

/// Events read from the log per page while folding.
const PAGE: usize = 1_000;

/// Which point of a resource's life to rebuild.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StatePoint {
    /// Right after the event with this version.
    Version(u64),
    /// As it stood at this instant.
    At(Timestamp),
}

/// Why there is no state at the point asked for.
#[derive(Debug, thiserror::Error)]
pub enum StateAtError {
    #[error("resource not found")]
    NotFound,
    #[error("version {asked} is not between 1 and the resource's current version {head}")]
    InvalidVersion { asked: u64, head: u64 },
    #[error("the resource did not exist yet at {at} ms (created at {created} ms)")]
    BeforeCreation { at: i64, created: i64 },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Folds `events` (in version order, from version 1) up to `point`. Returns the state and
/// whether the fold stopped early (the point was reached before the end of `events`).
pub fn fold_until(
    mut state: Option<ServerResource>,
    events: &[EventEnvelope],
    point: StatePoint,
) -> (Option<ServerResource>, bool) {
    for e in events {
        let past = match point {
            StatePoint::Version(v) => e.version > v,
            StatePoint::At(t) => e.at > t,
        };
        if past {
            return (state, true);
        }
        state = apply(state, e);
    }
    (state, false)
}

/// The state as the rules would see it at `t`: regeneration accrued and an expired lock gone.
/// Only the balance and the lock move; `version` and `updated_at` stay those of the last event.
pub fn settle_at(mut state: ServerResource, t: Timestamp) -> ServerResource {
    state.balance = accrue(state.balance, state.max_amount, state.regen_milli, t);
    if state.active_lock(t).is_none() {
        state.lock = None;
    }
    state
}

/// Rebuilds `id`'s state at `point` from its log, reading it a page at a time and stopping as soon
/// as the point is passed.
pub async fn state_at(
    store: &dyn EventStore,
    id: crate::domain::ResourceId,
    point: StatePoint,
) -> Result<ServerResource, StateAtError> {
    let head = store.head(id).await?;
    if head == 0 {
        return Err(StateAtError::NotFound);
    }
    if let StatePoint::Version(v) = point
        && (v == 0 || v > head)
    {
        return Err(StateAtError::InvalidVersion { asked: v, head });
    }
    let mut state = None;
    let mut after = 0;
    loop {
        let page = store.events(id, after, PAGE).await?;
        let Some(last) = page.last() else { break };
        after = last.version;
        let (folded, stopped) = fold_until(state, &page, point);
        state = folded;
        if stopped || page.len() < PAGE {
            break;
        }
    }
    match (state, point) {
        (Some(s), StatePoint::Version(_)) => Ok(s),
        (Some(s), StatePoint::At(t)) => Ok(settle_at(s, t)),
        (None, StatePoint::At(t)) => {
            let first = store.events(id, 0, 1).await?;
            Err(StateAtError::BeforeCreation {
                at: t.millis(),
                created: first.first().map_or(0, |e| e.at.millis()),
            })
        }
        (None, StatePoint::Version(_)) => Err(StateAtError::NotFound),
    }
}
