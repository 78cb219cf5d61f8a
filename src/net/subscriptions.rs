//! Live subscriptions: every committed change of the watched resources, in version order, with no
//! gap and no repeat, resting on the event log rather than on the hub.
//!
//! Per resource the subscription remembers the last version it sent. A change at or below it is
//! dropped (a repeat). A change whose `base_version` is above it means something was missed (a
//! lagged hub receiver, two writers overlapping, a relay from elsewhere): the missing events are
//! read from the store, replayed from the state at the last sent version and sent as one update
//! per command, before anything newer. Subscribing takes the hub receiver *before* reading the
//! current state, so a change committed in between is either in that state (and dropped as a
//! repeat) or arrives after it.

use crate::bus::Change;
use crate::domain::{
    self, ClientResource, EventEnvelope, PlayerId, Principal, ResourceId, ServerResource, View,
};
use crate::net::requests::view_for;
use crate::node::Node;
use crate::protocol::{self, ServerMessage};
use crate::store::StoreError;
use bytes::Bytes;
use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use tokio::sync::broadcast::{self, error::RecvError};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

/// Events read from the log per page while repairing a gap.
const FILL_PAGE: usize = 1_000;

/// What waits in a session's outbound queue: 32 bytes a slot (a tungstenite `Message` is twice
/// that), which matters because the queue's first block is allocated for every idle session.
pub(crate) enum Outbound {
    /// One encoded server message, sent as a binary frame.
    Frame(Bytes),
    /// A WebSocket ping (liveness).
    Ping,
}

impl Outbound {
    pub fn into_message(self) -> Message {
        match self {
            Outbound::Frame(bytes) => Message::Binary(bytes),
            Outbound::Ping => Message::Ping(Bytes::new()),
        }
    }
}

/// The sending side of a session's outbound queue.
#[derive(Clone)]
pub(crate) struct Outbox {
    /// Bounded (`NetConfig::outbound_queue`); only ever used with `try_send`.
    tx: mpsc::Sender<Outbound>,
    /// Cancelled when the queue is found full: the session then closes with 4008.
    overflow: CancellationToken,
}

impl Outbox {
    pub fn new(tx: mpsc::Sender<Outbound>, overflow: CancellationToken) -> Self {
        Self { tx, overflow }
    }

    /// Queues an encoded message without waiting; false if the session is gone or could not
    /// keep up.
    pub fn send(&self, frame: Bytes) -> bool {
        self.put(Outbound::Frame(frame))
    }

    /// Queues a ping, like [`Outbox::send`].
    pub fn ping(&self) -> bool {
        self.put(Outbound::Ping)
    }

    fn put(&self, msg: Outbound) -> bool {
        match self.tx.try_send(msg) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.overflow.cancel();
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }
}

/// What a subscription watches.
pub(crate) enum Target {
    Resource(ResourceId),
    Owner(PlayerId),
}

pub(crate) enum SubscribeError {
    /// The client's fault: a code and a message.
    Rejected(&'static str, String),
    Store(StoreError),
}

impl From<StoreError> for SubscribeError {
    fn from(e: StoreError) -> Self {
        SubscribeError::Store(e)
    }
}

/// The last state a subscription sent for a resource, kept to replay a gap from.
enum Known {
    /// Read from the store (at subscribe time or while repairing a gap).
    State(Box<ServerResource>),
    /// A live change, shared with every other subscriber (no copy per subscriber).
    Change(Arc<Change>),
}

impl Known {
    fn state(&self) -> &ServerResource {
        match self {
            Known::State(s) => s,
            Known::Change(c) => &c.state,
        }
    }
}

/// Where one resource of a subscription stands.
struct Tracked {
    /// The last version sent to the client (or that the client said it has).
    last: u64,
    /// The state at `last`, if held; `None` means "replay from the start of the log".
    known: Option<Known>,
}

/// Reads the current state and prepares the live task. Returns the views for `subscribed` and
/// the task, which the session spawns after queueing `subscribed` (so the reply comes first).
pub(crate) async fn start(
    node: Arc<Node>,
    principal: &Principal,
    sub: u64,
    target: Target,
    from_version: Option<u64>,
    outbox: Outbox,
    cancel: CancellationToken,
) -> Result<
    (
        Vec<ClientResource>,
        impl Future<Output = ()> + Send + 'static,
    ),
    SubscribeError,
> {
    let mut tracked = HashMap::new();
    let mut views = Vec::new();
    let owner = match &target {
        Target::Owner(owner) => Some(owner.clone()),
        Target::Resource(_) => None,
    };
    let (rx, view, resume) = match target {
        Target::Resource(id) => {
            // Receiver first, then the state: nothing committed in between is lost.
            let rx = node.hub.subscribe_resource(id);
            let state = node.store.load(id).await?.state().ok_or_else(|| {
                SubscribeError::Rejected("not_found", format!("resource {id} not found"))
            })?;
            let view = view_for(principal, &state.owner);
            match from_version {
                Some(n) if n > state.version => {
                    return Err(SubscribeError::Rejected(
                        "invalid_from_version",
                        format!(
                            "from_version {n} is ahead of the resource's version {}",
                            state.version
                        ),
                    ));
                }
                Some(n) => {
                    let known = (n == state.version).then(|| Known::State(Box::new(state)));
                    tracked.insert(id, Tracked { last: n, known });
                }
                None => {
                    views.push(ClientResource::from_server(&state).redact(view));
                    tracked.insert(
                        id,
                        Tracked {
                            last: state.version,
                            known: Some(Known::State(Box::new(state))),
                        },
                    );
                }
            }
            (rx, view, from_version.is_some())
        }
        Target::Owner(owner) => {
            let rx = node.hub.subscribe_owner(&owner);
            let view = view_for(principal, &owner);
            // Ids from the read model, states from the log (the read model may lag behind it).
            // A resource too new for the read model is delivered from version 0 at its next
            // change, by the gap repair.
            for listed in node.queries.list_by_owner(&owner).await? {
                if let Some(state) = node.store.load(listed.id).await?.state() {
                    views.push(ClientResource::from_server(&state).redact(view));
                    tracked.insert(
                        state.id,
                        Tracked {
                            last: state.version,
                            known: Some(Known::State(Box::new(state))),
                        },
                    );
                }
            }
            (rx, view, false)
        }
    };
    let live = Live {
        node,
        view,
        rx,
        tracked,
        owner,
        sub,
        outbox,
    };
    Ok((views, live.run(cancel, resume)))
}

/// The running part of one subscription.
struct Live {
    node: Arc<Node>,
    /// The audience, fixed at subscribe time (owner or spectator view).
    view: View,
    /// This subscription's hub topic (one resource or one owner).
    rx: broadcast::Receiver<Arc<Change>>,
    tracked: HashMap<ResourceId, Tracked>,
    /// For an owner subscription, the owner (new resources of it are picked up too).
    owner: Option<PlayerId>,
    /// The subscription's id, to name it if it has to stop.
    sub: u64,
    outbox: Outbox,
}

/// Why the subscription cannot go on.
enum Stop {
    /// The session is gone or its queue is full (the session closes itself).
    Session,
    /// The log could not be read: the client is told (`subscription_failed`).
    Store,
}

impl Live {
    async fn run(mut self, cancel: CancellationToken, resume: bool) {
        let outcome = tokio::select! {
            _ = cancel.cancelled() => return,
            outcome = self.pump(resume) => outcome,
        };
        if let Err(Stop::Store) = outcome {
            let msg = ServerMessage::Error {
                req: None,
                code: "subscription_failed".into(),
                message: format!(
                    "subscription {} stopped: storage unavailable; resubscribe with from_version",
                    self.sub
                ),
            };
            self.node.metrics.error_sent();
            self.outbox.send(Bytes::from(protocol::encode(&msg)));
        }
    }

    /// Repairs a resume's gap, then forwards live changes until something stops it.
    async fn pump(&mut self, resume: bool) -> Result<(), Stop> {
        if resume {
            let ids: Vec<ResourceId> = self.tracked.keys().copied().collect();
            for id in ids {
                self.fill(id).await?;
            }
        }
        loop {
            match self.rx.recv().await {
                Ok(change) => self.on_change(change).await?,
                Err(RecvError::Lagged(missed)) => {
                    tracing::debug!(missed, "subscription lagged; repairing from the log");
                    self.on_lag().await?;
                }
                Err(RecvError::Closed) => return Err(Stop::Session),
            }
        }
    }

    async fn on_change(&mut self, change: Arc<Change>) -> Result<(), Stop> {
        let id = change.resource_id;
        let last = self.tracked.get(&id).map_or(0, |t| t.last);
        if change.version() <= last {
            return Ok(()); // already sent (or read from the log)
        }
        if change.base_version() != last {
            self.fill(id).await?;
            let last = self.tracked.get(&id).map_or(0, |t| t.last);
            if change.version() <= last || change.base_version() != last {
                return Ok(());
            }
        }
        let frame = shared_frame(&change, self.view);
        self.send(frame)?;
        self.tracked.insert(
            id,
            Tracked {
                last: change.version(),
                known: Some(Known::Change(change)),
            },
        );
        Ok(())
    }

    /// After the hub dropped changes for us: bring every resource up to the log's head.
    async fn on_lag(&mut self) -> Result<(), Stop> {
        let mut ids: Vec<ResourceId> = self.tracked.keys().copied().collect();
        // An owner subscription may also have missed resources it never saw.
        if let Some(owner) = &self.owner {
            match self.node.queries.list_by_owner(owner).await {
                Ok(list) => ids.extend(
                    list.into_iter()
                        .map(|v| v.id)
                        .filter(|id| !self.tracked.contains_key(id)),
                ),
                Err(e) => return Err(store_failed(e)),
            }
        }
        for id in ids {
            self.fill(id).await?;
        }
        Ok(())
    }

    /// Sends every change of `id` after the last sent version, read from the log, one update per
    /// command.
    async fn fill(&mut self, id: ResourceId) -> Result<(), Stop> {
        self.node.metrics.gap_fill();
        let store = self.node.store.clone();
        let tracked = self.tracked.entry(id).or_insert(Tracked {
            last: 0,
            known: None,
        });
        let mut state = match &tracked.known {
            Some(known) => Some(known.state().clone()),
            None if tracked.last == 0 => None,
            None => {
                let before = store
                    .events(id, 0, tracked.last as usize)
                    .await
                    .map_err(store_failed)?;
                domain::replay(None, &before)
            }
        };
        let mut last = tracked.last;
        loop {
            let page = store
                .events(id, last, FILL_PAGE)
                .await
                .map_err(store_failed)?;
            if page.is_empty() {
                break;
            }
            for run in page.chunk_by(|a, b| a.command_id == b.command_id) {
                state = domain::replay(state, run);
                let Some(now) = &state else { continue };
                let update = update_for(run, now, self.view);
                self.send(update)?;
                last = now.version;
            }
            if page.len() < FILL_PAGE {
                break;
            }
        }
        let tracked = self.tracked.entry(id).or_insert(Tracked {
            last: 0,
            known: None,
        });
        tracked.last = last;
        tracked.known = state.map(|s| Known::State(Box::new(s)));
        Ok(())
    }

    fn send(&self, frame: Bytes) -> Result<(), Stop> {
        self.node.metrics.update_sent();
        if self.outbox.send(frame) {
            Ok(())
        } else {
            Err(Stop::Session)
        }
    }
}

fn store_failed(e: StoreError) -> Stop {
    tracing::warn!(error = %e, "subscription stopped: cannot read the log");
    Stop::Store
}

/// The update frame of a live change for `view`, encoded by the first subscriber that needs it
/// and shared by all others.
fn shared_frame(change: &Change, view: View) -> Bytes {
    let cell = match view {
        View::Owner => &change.owner_frame,
        View::Spectator => &change.spectator_frame,
    };
    cell.get_or_init(|| {
        Bytes::from(protocol::encode(&ServerMessage::Update {
            resource_id: change.resource_id,
            base_version: change.base_version(),
            version: change.version(),
            resource: change.view.redact(view),
        }))
    })
    .clone()
}

/// The update frame of one command's events read from the log (`run`, non-empty), with the
/// state they led to.
fn update_for(run: &[EventEnvelope], state: &ServerResource, view: View) -> Bytes {
    let first = run.first().map_or(state.version, |e| e.version);
    Bytes::from(protocol::encode(&ServerMessage::Update {
        resource_id: state.id,
        base_version: first.saturating_sub(1),
        version: state.version,
        resource: ClientResource::from_server(state).redact(view),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Balance, CommandId, EVENT_SCHEMA_VERSION, ResourceEvent, Timestamp};

    fn change() -> Change {
        let id = ResourceId::new();
        let event = EventEnvelope {
            resource_id: id,
            version: 1,
            command_id: CommandId::new(),
            at: Timestamp(1),
            schema: EVENT_SCHEMA_VERSION,
            event: ResourceEvent::ResourceLocked {
                holder: PlayerId::new("alice"),
                reason: "secret".into(),
                expires_at: Timestamp(9),
            },
        };
        let created = EventEnvelope {
            version: 1,
            event: ResourceEvent::ResourceCreated {
                owner: PlayerId::new("alice"),
                resource_type: "gold".into(),
                max_amount: 10,
                regen_milli: 5,
                balance: Balance {
                    amount: 1,
                    regen_carry: 0,
                    regen_at: Timestamp(1),
                },
                by: PlayerId::new("alice"),
            },
            ..event.clone()
        };
        let locked = EventEnvelope {
            version: 2,
            ..event
        };
        let state = domain::replay(None, [&created, &locked]).unwrap();
        Change::new(vec![locked], state)
    }

    // Guards against: encoding an update once per subscriber (10k subscribers, 10k encodings)
    // or leaking the owner's view to spectators through the shared frame.
    #[test]
    fn an_update_is_encoded_once_per_view_and_shared() {
        let change = change();
        let a = shared_frame(&change, View::Owner);
        let b = shared_frame(&change, View::Owner);
        assert_eq!(a.as_ptr(), b.as_ptr(), "the same bytes, not a copy");
        let s1 = shared_frame(&change, View::Spectator);
        let s2 = shared_frame(&change, View::Spectator);
        assert_eq!(s1.as_ptr(), s2.as_ptr());
        let owner: ServerMessage = protocol::decode(&a).unwrap();
        let spectator: ServerMessage = protocol::decode(&s1).unwrap();
        match (owner, spectator) {
            (
                ServerMessage::Update {
                    resource: o,
                    base_version: 1,
                    version: 2,
                    ..
                },
                ServerMessage::Update { resource: s, .. },
            ) => {
                assert_eq!(o.lock_reason.as_deref(), Some("secret"));
                assert_eq!((s.lock_reason, s.regen_milli, s.locked), (None, None, true));
            }
            other => panic!("{other:?}"),
        }
    }
}
