//! What a caller hands a backend's group-commit writer, and how the outcomes come back: the one
//! queue protocol both backends' writers read.

use super::{AppendError, AppendRequest, CommitRecord, StoreError};
use tokio::sync::{mpsc, oneshot};

/// One caller's appends (a chain, checked in order) and where their outcomes go, in that order.
#[derive(Debug)]
pub struct AppendJob {
    pub appends: Vec<AppendRequest>,
    pub reply: oneshot::Sender<Vec<Result<CommitRecord, AppendError>>>,
}

/// Sends `appends` as one job on `queue` and waits for their outcomes, in order. A closed queue
/// answers every append [`StoreError::Closed`] (nothing was written); a job the writer dropped
/// answers [`StoreError::NoOutcome`] with `unanswered` (whether it committed is unknown).
pub async fn submit(
    queue: &mpsc::Sender<AppendJob>,
    appends: Vec<AppendRequest>,
    unanswered: &'static str,
) -> Vec<Result<CommitRecord, AppendError>> {
    let count = appends.len();
    if count == 0 {
        return Vec::new();
    }
    let failed = |e: StoreError| (0..count).map(|_| Err(e.clone().into())).collect();
    let (reply, answer) = oneshot::channel();
    if queue.send(AppendJob { appends, reply }).await.is_err() {
        return failed(StoreError::Closed);
    }
    answer
        .await
        .unwrap_or_else(|_| failed(StoreError::NoOutcome(unanswered)))
}

/// [`submit`] for one append: its outcome.
pub async fn submit_one(
    queue: &mpsc::Sender<AppendJob>,
    append: AppendRequest,
    unanswered: &'static str,
) -> Result<CommitRecord, AppendError> {
    submit(queue, vec![append], unanswered)
        .await
        .pop()
        .unwrap_or_else(|| Err(StoreError::NoOutcome(unanswered).into()))
}
