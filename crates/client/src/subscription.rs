//! Subscriptions: the live stream of a resource's (or an owner's) updates, and the registry the
//! client keeps of them so a reconnect can resume each one where it stopped.
//!
//! The registry is shared by the [`Client`](crate::Client) handles and the background task of the
//! current connection. That task routes each `update` (by its `sub`) to the subscription's channel
//! and records the version it carried, so the last version *received* of every resource is known
//! at any moment, whether or not the caller has read it yet (what was received stays queued and
//! is delivered: resuming from it leaves no gap).

use crate::client::Inner;
use futures::Stream;
use std::collections::HashMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, Weak};
use std::task::{Context, Poll};
use tokio::sync::mpsc;
use warden_protocol::{ClientResource, PlayerId, ResourceId};

/// One change of a subscribed resource: versions `base_version + 1 ..= version`, and the view
/// after them.
///
/// Live, each update is one committed command (`version = base_version + 1`, or `+ 2` when a lock
/// expiry was recorded just before it). Per resource, updates come in version order with no gap
/// and no repeat: `base_version` equals the previous update's `version` (or the version in
/// [`Subscription::snapshot`]; `0` for a resource an owner subscription saw created).
///
/// After [`Client::reconnect`](crate::Client::reconnect), a resource subscription resumes from the
/// log (one update per command again); an owner subscription takes the current views instead
/// (the protocol does not replay an owner's log), so its first update of each resource may span
/// several versions: `base_version` is still the last version delivered, `version` the current.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Update {
    /// The resource that changed.
    pub resource_id: ResourceId,
    /// The version before the change.
    pub base_version: u64,
    /// The version after it.
    pub version: u64,
    /// The view after it (the owner view, or the spectator view).
    pub resource: ClientResource,
}

/// What a subscription covers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Target {
    Resource(ResourceId),
    Owner(PlayerId),
}

/// A client-side subscription's id (stable across reconnects, unlike the server's `sub`).
pub(crate) type LocalSub = u64;

#[derive(Debug)]
struct Entry {
    target: Target,
    /// The last version received, per resource.
    last: HashMap<ResourceId, u64>,
    tx: mpsc::UnboundedSender<Update>,
    /// The connection (its epoch) and the server's `sub` it is live on, if any.
    bound: Option<(u64, u64)>,
    /// Whether a first `subscribed` arrived (so it is resumed after a reconnect). Until then the
    /// caller of `subscribe_*` is still waiting, and a failure is its to report.
    established: bool,
}

/// A subscription to resume on a new connection.
#[derive(Debug)]
pub(crate) struct Resume {
    pub(crate) local: LocalSub,
    pub(crate) target: Target,
    /// For a resource subscription: the last version received.
    pub(crate) from_version: Option<u64>,
}

/// Every subscription of a client.
#[derive(Debug, Default)]
pub(crate) struct Registry {
    next: AtomicU64,
    entries: Mutex<HashMap<LocalSub, Entry>>,
}

impl Registry {
    fn lock(&self) -> MutexGuard<'_, HashMap<LocalSub, Entry>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers a subscription about to be asked for; `from_version` is where a resource
    /// subscription starts (its caller's resume point).
    pub(crate) fn add(
        &self,
        target: Target,
        from_version: Option<u64>,
    ) -> (LocalSub, mpsc::UnboundedReceiver<Update>) {
        let local = self.next.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::unbounded_channel();
        let mut last = HashMap::new();
        if let (Target::Resource(id), Some(v)) = (&target, from_version) {
            last.insert(*id, v);
        }
        self.lock().insert(
            local,
            Entry {
                target,
                last,
                tx,
                bound: None,
                established: false,
            },
        );
        (local, rx)
    }

    pub(crate) fn remove(&self, local: LocalSub) -> Option<(u64, u64)> {
        self.lock().remove(&local).and_then(|e| e.bound)
    }

    /// The connection and server `sub` a subscription is live on.
    pub(crate) fn bound(&self, local: LocalSub) -> Option<(u64, u64)> {
        self.lock().get(&local).and_then(|e| e.bound)
    }

    /// The last version received of `id` by subscription `local`.
    pub(crate) fn last_version(&self, local: LocalSub, id: &ResourceId) -> Option<u64> {
        self.lock()
            .get(&local)
            .and_then(|e| e.last.get(id).copied())
    }

    /// A `subscribed` arrived for `local` on connection `epoch`, with server id `sub` and the
    /// current views `resources`. On the first one these are the caller's snapshot; on a resumed
    /// one each view newer than what was received becomes an update (owner subscriptions).
    /// Called by the connection's task before it reads the next frame, so no update of `sub` can
    /// overtake it.
    pub(crate) fn bind(&self, local: LocalSub, epoch: u64, sub: u64, resources: &[ClientResource]) {
        let mut entries = self.lock();
        let Some(entry) = entries.get_mut(&local) else {
            return;
        };
        entry.bound = Some((epoch, sub));
        if !entry.established {
            entry.established = true;
            for r in resources {
                entry.last.insert(r.id, r.version);
            }
            return;
        }
        for r in resources {
            let last = entry.last.get(&r.id).copied().unwrap_or(0);
            if r.version > last {
                entry.last.insert(r.id, r.version);
                let _ = entry.tx.send(Update {
                    resource_id: r.id,
                    base_version: last,
                    version: r.version,
                    resource: r.clone(),
                });
            }
        }
    }

    /// Hands an update to subscription `local`, recording its version.
    pub(crate) fn deliver(&self, local: LocalSub, update: Update) {
        let mut entries = self.lock();
        if let Some(entry) = entries.get_mut(&local) {
            let last = entry.last.entry(update.resource_id).or_insert(0);
            *last = (*last).max(update.version);
            let _ = entry.tx.send(update);
        }
    }

    /// Connection `epoch` ended: nothing is live on it any more.
    pub(crate) fn unbind_epoch(&self, epoch: u64) {
        for entry in self.lock().values_mut() {
            if entry.bound.is_some_and(|(e, _)| e == epoch) {
                entry.bound = None;
            }
        }
    }

    /// The established subscriptions not live on connection `epoch`, with where each resumes.
    /// (A binding to an older connection counts as none, whether or not that connection's task
    /// has unbound it yet.)
    pub(crate) fn to_resume(&self, epoch: u64) -> Vec<Resume> {
        self.lock()
            .iter()
            .filter(|(_, e)| e.established && e.bound.is_none_or(|(bound, _)| bound != epoch))
            .map(|(local, e)| Resume {
                local: *local,
                target: e.target.clone(),
                from_version: match &e.target {
                    Target::Resource(id) => e.last.get(id).copied(),
                    Target::Owner(_) => None,
                },
            })
            .collect()
    }
}

/// A live subscription: its [`snapshot`](Self::snapshot), then its [`Update`]s, in order per
/// resource, across reconnects (see [`Client::reconnect`](crate::Client::reconnect)).
///
/// Read it with [`recv`](Self::recv) or as a [`Stream`]. Updates wait in an unbounded queue
/// until read: a client that stops reading grows it (the server's own limit, the close with 4008,
/// only applies to what the client does not read off the socket, and this client always reads).
///
/// The stream ends when every [`Client`](crate::Client) handle is dropped. Dropping the
/// subscription ends it on the server too (without waiting for the answer);
/// [`unsubscribe`](Self::unsubscribe) waits for it.
#[derive(Debug)]
pub struct Subscription {
    pub(crate) local: LocalSub,
    pub(crate) snapshot: Vec<ClientResource>,
    pub(crate) rx: mpsc::UnboundedReceiver<Update>,
    pub(crate) client: Weak<Inner>,
    /// Weak too: once the client and its connection's task are gone, so is the registry, and
    /// with it the sending side of `rx`, which ends the stream.
    pub(crate) registry: Weak<Registry>,
    pub(crate) ended: bool,
}

impl Subscription {
    /// The resources the subscription covered when it started, as they were then (the server's
    /// `subscribed`); empty for a resource subscription started with `from_version`.
    pub fn snapshot(&self) -> &[ClientResource] {
        &self.snapshot
    }

    /// The next update; `None` once the client is gone.
    pub async fn recv(&mut self) -> Option<Update> {
        self.rx.recv().await
    }

    /// The last version of `id` the client received on this subscription (it may still be
    /// queued here, unread): where a resume starts.
    pub fn last_version(&self, id: &ResourceId) -> Option<u64> {
        self.registry.upgrade()?.last_version(self.local, id)
    }

    /// Whether the subscription is live on the current connection (after a reconnect, until its
    /// resume was answered, or if it was refused, it is not).
    pub fn is_live(&self) -> bool {
        let bound = self.registry.upgrade().and_then(|r| r.bound(self.local));
        match (bound, self.client.upgrade()) {
            (Some((epoch, _)), Some(inner)) => inner.current_epoch() == epoch,
            _ => false,
        }
    }

    /// Ends the subscription and waits for the server to confirm (`unsubscribed`); no update
    /// of it follows. On a dropped connection there is nothing to end and this returns `Ok`.
    pub async fn unsubscribe(mut self) -> Result<(), crate::ClientError> {
        self.ended = true;
        let bound = self.registry.upgrade().and_then(|r| r.remove(self.local));
        match (bound, self.client.upgrade()) {
            (Some((epoch, sub)), Some(inner)) => inner.unsubscribe(epoch, sub).await,
            _ => Ok(()),
        }
    }
}

impl Stream for Subscription {
    type Item = Update;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Update>> {
        self.rx.poll_recv(cx)
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        if self.ended {
            return;
        }
        let bound = self.registry.upgrade().and_then(|r| r.remove(self.local));
        if let (Some((epoch, sub)), Some(inner)) = (bound, self.client.upgrade()) {
            inner.unsubscribe_in_background(epoch, sub);
        }
    }
}
