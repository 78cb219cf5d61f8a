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
//!
//! Reading from the log is flow-controlled: a page is read only when the previous one was sent,
//! and each update of it is queued only while the session's outbound queue is at most half full
//! (the other half stays free for replies and live updates). So a resume or a repair of any length
//! goes at the client's reading speed and holds one page in memory; live changes that arrive
//! meanwhile wait in the hub, and if it overflows they are read from the log too. Live updates
//! themselves are queued without waiting: a client that cannot take them fills its queue and is
//! closed with 4008.

use crate::outbox::Outbox;
use crate::reply::RequestError;
use bytes::Bytes;
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use tokio::sync::broadcast::{self, error::RecvError};
use tokio_util::sync::CancellationToken;
use warden_core::domain::{
    Audience, ClientResource, PlayerId, Principal, ResourceId, ServerResource,
};
use warden_core::hub::Change;
use warden_core::node::Node;
use warden_core::projection::{ReadError, Replayed};
use warden_protocol::{self, ErrorCode, ServerMessage};

/// What a subscription watches.
pub(crate) enum Target {
    Resource(ResourceId),
    Owner(PlayerId),
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

impl Tracked {
    /// At `state`'s version, holding it.
    fn at(state: ServerResource) -> Self {
        Self {
            last: state.version,
            known: Some(Known::State(Box::new(state))),
        }
    }
}

/// What [`start`] gives the session: the views for `subscribed` and the live task, which the
/// session spawns after queueing `subscribed` (so the reply comes before any update).
pub(crate) type Started = (
    Vec<ClientResource>,
    Pin<Box<dyn Future<Output = ()> + Send + 'static>>,
);

/// Reads the current state of what `target` covers and prepares the live task.
pub(crate) async fn start(
    node: Arc<Node>,
    principal: &Principal,
    sub: u64,
    target: Target,
    from_version: Option<u64>,
    outbox: Outbox,
    cancel: CancellationToken,
) -> Result<Started, RequestError> {
    let (watch, views) = match target {
        Target::Resource(id) => for_resource(&node, principal, id, from_version).await?,
        Target::Owner(owner) => for_owner(&node, principal, owner).await?,
    };
    let live = Live {
        node,
        audience: watch.audience,
        rx: watch.rx,
        tracked: watch.tracked,
        owner: watch.owner,
        sub,
        outbox,
    };
    let resume = from_version.is_some();
    Ok((views, Box::pin(live.run(cancel, resume))))
}

/// What a subscription starts from.
struct Watch {
    audience: Audience,
    rx: broadcast::Receiver<Arc<Change>>,
    tracked: HashMap<ResourceId, Tracked>,
    owner: Option<PlayerId>,
}

/// A subscription to one resource: its current view, or with `from_version` nothing yet (the
/// task sends what came after it from the log first).
async fn for_resource(
    node: &Node,
    principal: &Principal,
    id: ResourceId,
    from_version: Option<u64>,
) -> Result<(Watch, Vec<ClientResource>), RequestError> {
    // Receiver first, then the state: nothing committed in between is lost.
    let rx = node.hub().subscribe_resource(id);
    let (audience, state) = node.queries().subscription_start(principal, id).await?;
    let mut views = Vec::new();
    let mut tracked = HashMap::new();
    match from_version {
        Some(n) if n > state.version => {
            return Err(RequestError::new(
                ErrorCode::InvalidFromVersion,
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
            views.push(audience.view_of(&state));
            tracked.insert(id, Tracked::at(state));
        }
    }
    let watch = Watch {
        audience,
        rx,
        tracked,
        owner: None,
    };
    Ok((watch, views))
}

/// A subscription to an owner: the current view of each of its resources; new ones are picked
/// up as they come.
async fn for_owner(
    node: &Node,
    principal: &Principal,
    owner: PlayerId,
) -> Result<(Watch, Vec<ClientResource>), RequestError> {
    let rx = node.hub().subscribe_owner(&owner);
    let (audience, states) = node
        .queries()
        .owner_subscription_start(principal, &owner)
        .await?;
    let mut views = Vec::with_capacity(states.len());
    let mut tracked = HashMap::with_capacity(states.len());
    for state in states {
        views.push(audience.view_of(&state));
        tracked.insert(state.id, Tracked::at(state));
    }
    let watch = Watch {
        audience,
        rx,
        tracked,
        owner: Some(owner),
    };
    Ok((watch, views))
}

/// The running part of one subscription.
struct Live {
    node: Arc<Node>,
    /// The audience, fixed at subscribe time (owner or spectator view).
    audience: Audience,
    /// This subscription's hub topic (one resource or one owner).
    rx: broadcast::Receiver<Arc<Change>>,
    tracked: HashMap<ResourceId, Tracked>,
    /// For an owner subscription, the owner (new resources of it are picked up too).
    owner: Option<PlayerId>,
    /// The subscription's id, written into each update.
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
            let msg = RequestError::new(
                ErrorCode::SubscriptionFailed,
                format!(
                    "subscription {} stopped: storage unavailable; resubscribe with from_version",
                    self.sub
                ),
            )
            .into_reply(None);
            self.node.metrics().error_sent();
            self.outbox.send(Bytes::from(warden_protocol::encode(&msg)));
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
        let frame = shared_frame(&change, self.audience, self.sub);
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
            match self.node.queries().owned(owner).await {
                Ok(owned) => ids.extend(
                    owned
                        .into_iter()
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
    /// command, at the client's reading speed (see the module doc).
    async fn fill(&mut self, id: ResourceId) -> Result<(), Stop> {
        self.node.metrics().gap_fill();
        let tracked = self.tracked.entry(id).or_insert(Tracked {
            last: 0,
            known: None,
        });
        let known = tracked.known.as_ref().map(|k| k.state().clone());
        let mut replay = self
            .node
            .queries()
            .replay_after(id, self.audience, tracked.last, known)
            .await
            .map_err(store_failed)?;
        while let Some(page) = replay.next_page().await.map_err(store_failed)? {
            for step in page {
                if !self.outbox.room().await {
                    return Err(Stop::Session);
                }
                let version = step.version;
                self.send(update_frame(id, step, self.sub))?;
                // Recorded as it goes, so a stop half-way leaves an exact resume point.
                if let Some(t) = self.tracked.get_mut(&id) {
                    t.last = version;
                }
            }
        }
        let tracked = self.tracked.entry(id).or_insert(Tracked {
            last: 0,
            known: None,
        });
        tracked.last = replay.last();
        tracked.known = replay.into_state().map(|s| Known::State(Box::new(s)));
        Ok(())
    }

    fn send(&self, frame: Bytes) -> Result<(), Stop> {
        self.node.metrics().update_sent();
        if self.outbox.send(frame) {
            Ok(())
        } else {
            Err(Stop::Session)
        }
    }
}

fn store_failed(e: ReadError) -> Stop {
    tracing::warn!(error = %e, "subscription stopped: cannot read the log");
    Stop::Store
}

/// The update frame of a live change for `view` and subscription `sub`. The message is encoded
/// once per view by the first subscriber that needs it (with `sub` 0) and shared; each
/// subscriber's copy only has its `sub` written in.
fn shared_frame(change: &Change, view: Audience, sub: u64) -> Bytes {
    let cell = match view {
        Audience::Owner => &change.owner_frame,
        Audience::Spectator => &change.spectator_frame,
    };
    let base = cell.get_or_init(|| {
        Bytes::from(warden_protocol::encode(&ServerMessage::Update {
            sub: 0,
            resource_id: change.resource_id,
            base_version: change.base_version(),
            version: change.version(),
            resource: change.view_for(view),
        }))
    });
    with_sub(base, sub)
}

/// How an update with `sub` 0 starts: a map of 6 fields, `type: "update"`, then `sub`, whose
/// value (the single byte 0) follows.
const UPDATE_HEAD: &[u8] = b"\x86\xa4type\xa6update\xa3sub";

/// `frame` (an update encoded with `sub` 0) with `sub` written in.
fn with_sub(frame: &Bytes, sub: u64) -> Bytes {
    let at = UPDATE_HEAD.len();
    debug_assert!(frame.starts_with(UPDATE_HEAD) && frame[at] == 0);
    if sub == 0 || !frame.starts_with(UPDATE_HEAD) {
        return frame.clone();
    }
    let mut out = Vec::with_capacity(frame.len() + 8);
    out.extend_from_slice(&frame[..at]);
    out.extend_from_slice(&warden_protocol::encode(&sub));
    out.extend_from_slice(&frame[at + 1..]);
    Bytes::from(out)
}

/// The update frame of one command read back from the log.
fn update_frame(id: ResourceId, step: Replayed, sub: u64) -> Bytes {
    Bytes::from(warden_protocol::encode(&ServerMessage::Update {
        sub,
        resource_id: id,
        base_version: step.base_version,
        version: step.version,
        resource: step.resource,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use warden_core::domain::{
        self, Balance, CommandId, EVENT_SCHEMA_VERSION, EventEnvelope, ResourceEvent, Timestamp,
    };

    fn change() -> Change {
        let id = ResourceId::new();
        let event = EventEnvelope {
            by_role: None,
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
                name: None,
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

    // Guards against: encoding an update once per subscriber (10k subscribers, 10k encodings),
    // leaking the owner's view to spectators through the shared frame, or a subscriber getting
    // another subscription's `sub`.
    #[test]
    fn an_update_is_encoded_once_per_view_and_carries_each_subscription_id() {
        let change = change();
        let a = shared_frame(&change, Audience::Owner, 1);
        let _ = shared_frame(&change, Audience::Owner, 2);
        let base = change.owner_frame.get().unwrap().as_ptr();
        let _ = shared_frame(&change, Audience::Owner, 70_000);
        assert_eq!(
            change.owner_frame.get().unwrap().as_ptr(),
            base,
            "encoded once"
        );
        let s1 = shared_frame(&change, Audience::Spectator, 3);
        let big = shared_frame(&change, Audience::Spectator, u64::MAX);
        let owner: ServerMessage = warden_protocol::decode(&a).unwrap();
        let spectator: ServerMessage = warden_protocol::decode(&s1).unwrap();
        match (owner, spectator) {
            (
                ServerMessage::Update {
                    sub: 1,
                    resource: o,
                    base_version: 1,
                    version: 2,
                    ..
                },
                ServerMessage::Update {
                    sub: 3,
                    resource: s,
                    ..
                },
            ) => {
                assert_eq!(o.lock_reason.as_deref(), Some("secret"));
                assert_eq!((s.lock_reason, s.regen_milli, s.locked), (None, None, true));
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            warden_protocol::decode::<ServerMessage>(&big).unwrap(),
            ServerMessage::Update {
                sub: u64::MAX,
                version: 2,
                ..
            }
        ));
    }
}
