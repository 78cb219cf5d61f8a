//! Reading a resource's log after a version, a page at a time, each command's events replayed
//! onto the state before them and shown as the audience may see them: what a subscription sends
//! when it resumes (`from_version`) or repairs a gap (a lagged hub, another node's commits).

use super::{QueryHandler, ReadError};
use crate::domain::ResourceId;
use crate::domain::{self, Audience, ClientResource, ClientSchema, EventEnvelope, ServerResource};

/// Events read from the log per page (the most a catching-up subscription holds at once).
pub const REPLAY_PAGE: usize = 1_000;

/// One command read back from the log: it took the resource from `base_version` to `version`,
/// and `resource` is the view after it, for the replay's audience.
#[derive(Clone, Debug, PartialEq)]
pub struct Replayed {
    pub base_version: u64,
    pub version: u64,
    pub resource: ClientResource,
}

/// A resource's commands after a version, read and replayed a page at a time
/// ([`QueryHandler::replay_after`]).
#[derive(Debug)]
pub struct LogReplay {
    queries: QueryHandler,
    id: ResourceId,
    audience: Audience,
    /// The last version replayed.
    last: u64,
    /// The state at `last` (`None` before the resource's creation).
    state: Option<ServerResource>,
    done: bool,
}

impl LogReplay {
    /// The next page of commands, in version order; `None` once the log's head is reached. A
    /// page never splits a command: one cut by the page's end is read again with the next.
    pub async fn next_page(&mut self) -> Result<Option<Vec<Replayed>>, ReadError> {
        if self.done {
            return Ok(None);
        }
        let page = self.queries.events(self.id, self.last, REPLAY_PAGE).await?;
        let full = page.len() == REPLAY_PAGE;
        let mut runs: Vec<&[EventEnvelope]> =
            page.chunk_by(|a, b| a.command_id == b.command_id).collect();
        if full && runs.len() > 1 {
            runs.pop();
        }
        let mut replayed = Vec::with_capacity(runs.len());
        for run in runs {
            self.state = domain::replay(self.state.take(), run);
            let Some(now) = &self.state else { continue };
            let first = run.first().map_or(now.version, |e| e.version);
            replayed.push(Replayed {
                base_version: first.saturating_sub(1),
                version: now.version,
                resource: ClientResource::from_server(now).redact(self.audience),
            });
            self.last = now.version;
        }
        self.done = !full;
        Ok(Some(replayed))
    }

    /// The last version replayed so far.
    pub fn last(&self) -> u64 {
        self.last
    }

    /// The state at [`last`](Self::last), to go on from.
    pub fn into_state(self) -> Option<ServerResource> {
        self.state
    }
}

impl QueryHandler {
    /// The commands of `id` after version `last`, for `audience`. `state` is the state at `last`
    /// if the caller holds it; otherwise the log up to `last` is replayed first, a page at a
    /// time (a resume may start far back).
    pub async fn replay_after(
        &self,
        id: ResourceId,
        audience: Audience,
        last: u64,
        state: Option<ServerResource>,
    ) -> Result<LogReplay, ReadError> {
        let state = match state {
            Some(state) => Some(state),
            None => {
                let mut state = None;
                let mut at = 0;
                while at < last {
                    let want = REPLAY_PAGE.min(usize::try_from(last - at).unwrap_or(REPLAY_PAGE));
                    let page = self.events(id, at, want).await?;
                    let Some(end) = page.last() else { break };
                    at = end.version;
                    state = domain::replay(state, &page);
                }
                state
            }
        };
        Ok(LogReplay {
            queries: self.clone(),
            id,
            audience,
            last,
            state,
            done: false,
        })
    }
}
