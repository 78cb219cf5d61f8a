//! The node's event hub: every committed change is published here once, and fans out through
//! broadcast channels to whoever listens: live subscriptions to one resource or to all of one
//! owner's resources, and anyone who wants every change (tests, tools).
//!
//! Channels are bounded broadcast channels. A receiver that falls more than its capacity behind
//! gets `Lagged` and must recover from the event log (the log, not the hub, is what guarantees no
//! gap). Per-resource and per-owner channels exist only while someone listens.

use crate::domain::{
    Audience, ClientResource, ClientSchema, EventEnvelope, PlayerId, ResourceId, ServerResource,
};
use bytes::Bytes;
use dashmap::DashMap;
use std::sync::{Arc, OnceLock};
use tokio::sync::broadcast;

/// Capacity of the all-changes channel.
pub const ALL_CAPACITY: usize = 16 * 1024;
/// Capacity of each per-resource and per-owner channel. A broadcast channel allocates all of its
/// slots when it is made, 32 bytes each, and one exists per watched resource and per watched
/// owner: at 1,024 slots that was 32 KiB per subscribed player (31 MiB of a 2,000-bot swarm's
/// RSS, measured with heaptrack). A receiver more than this many changes behind repairs from the
/// log, so the capacity trades memory against how often a stalled subscription reads the log:
/// 256 changes is 2.5 ms of one resource at 100 k commands/s.
pub const TOPIC_CAPACITY: usize = 256;

/// One committed command's events and the state they led to.
#[derive(Debug)]
pub struct Change {
    pub resource_id: ResourceId,
    pub owner: PlayerId,
    pub events: Vec<EventEnvelope>,
    /// The server-schema state after the events.
    pub state: ServerResource,
    /// The owner's client view of `state`.
    pub view: ClientResource,
    /// The wire encoding of this change for owners, made by the first session that sends it and
    /// then shared by every other subscriber.
    pub owner_frame: OnceLock<Bytes>,
    /// Likewise for the spectator view.
    pub spectator_frame: OnceLock<Bytes>,
}

impl Change {
    /// The change's view as `audience` may see it.
    pub fn view_for(&self, audience: Audience) -> ClientResource {
        self.view.redact(audience)
    }

    pub fn new(events: Vec<EventEnvelope>, state: ServerResource) -> Self {
        Self {
            resource_id: state.id,
            owner: state.owner.clone(),
            view: ClientResource::from_server(&state),
            events,
            state,
            owner_frame: OnceLock::new(),
            spectator_frame: OnceLock::new(),
        }
    }

    /// The version this change brought the resource to.
    pub fn version(&self) -> u64 {
        self.state.version
    }

    /// The version the resource had before this change.
    pub fn base_version(&self) -> u64 {
        self.events
            .first()
            .map_or(self.state.version, |e| e.version - 1)
    }
}

/// Fan-out of committed changes within one node.
#[derive(Debug)]
pub struct Hub {
    all: broadcast::Sender<Arc<Change>>,
    by_resource: Topics<ResourceId>,
    by_owner: Topics<PlayerId>,
}

/// A channel per key, for the keys someone subscribed to. Every command looks its resource and
/// owner up here (`has_listeners`), hence the fast hasher.
type Topics<K> = DashMap<K, broadcast::Sender<Arc<Change>>, foldhash::fast::RandomState>;

impl Default for Hub {
    fn default() -> Self {
        Self::new()
    }
}

impl Hub {
    pub fn new() -> Self {
        Self {
            all: broadcast::channel(ALL_CAPACITY).0,
            by_resource: Topics::default(),
            by_owner: Topics::default(),
        }
    }

    /// Publishes a committed change to every listener. Never blocks.
    pub fn publish(&self, change: Arc<Change>) {
        let _ = self.all.send(change.clone());
        send_topic(&self.by_resource, &change.resource_id, &change);
        send_topic(&self.by_owner, &change.owner, &change);
    }

    /// Whether anyone on this node may be listening for a change of resource `id` owned by
    /// `owner`. When not, the change need not be built: a subscriber that arrives later takes its
    /// receiver before it reads the state, so it reads this change from the log.
    pub fn has_listeners(&self, id: &ResourceId, owner: &PlayerId) -> bool {
        self.all.receiver_count() > 0
            || self.by_resource.contains_key(id)
            || self.by_owner.contains_key(owner)
    }

    pub fn subscribe_all(&self) -> broadcast::Receiver<Arc<Change>> {
        self.all.subscribe()
    }

    pub fn subscribe_resource(&self, id: ResourceId) -> broadcast::Receiver<Arc<Change>> {
        self.by_resource
            .entry(id)
            .or_insert_with(|| broadcast::channel(TOPIC_CAPACITY).0)
            .subscribe()
    }

    pub fn subscribe_owner(&self, owner: &PlayerId) -> broadcast::Receiver<Arc<Change>> {
        self.by_owner
            .entry(owner.clone())
            .or_insert_with(|| broadcast::channel(TOPIC_CAPACITY).0)
            .subscribe()
    }

    /// Resources someone on this node is subscribed to (a cross-node relay watches these).
    pub fn subscribed_resources(&self) -> Vec<ResourceId> {
        live_keys(&self.by_resource)
    }

    /// Owners whose resources someone on this node is subscribed to.
    pub fn subscribed_owners(&self) -> Vec<PlayerId> {
        live_keys(&self.by_owner)
    }

    /// Topic channels currently open (for metrics and tests of cleanup).
    pub fn topic_count(&self) -> usize {
        self.by_resource.len() + self.by_owner.len()
    }
}

fn live_keys<K: std::hash::Hash + Eq + Clone>(topics: &Topics<K>) -> Vec<K> {
    topics
        .iter()
        .filter(|t| t.value().receiver_count() > 0)
        .map(|t| t.key().clone())
        .collect()
}

fn send_topic<K: std::hash::Hash + Eq + Clone>(topics: &Topics<K>, key: &K, change: &Arc<Change>) {
    let mut unused = false;
    if let Some(tx) = topics.get(key) {
        unused = tx.send(change.clone()).is_err();
    }
    if unused {
        // Nobody listens any more; `remove_if` re-checks under the shard lock, so a subscriber
        // that arrived in between keeps its channel.
        topics.remove_if(key, |_, tx| tx.receiver_count() == 0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_change_has_listeners_only_where_someone_subscribed() {
        let hub = Hub::new();
        let (id, other) = (ResourceId::new(), ResourceId::new());
        let (alice, bob) = (PlayerId::new("alice"), PlayerId::new("bob"));
        assert!(!hub.has_listeners(&id, &alice), "nobody subscribed yet");
        let _resource = hub.subscribe_resource(id);
        assert!(hub.has_listeners(&id, &bob), "a watcher of the resource");
        assert!(
            !hub.has_listeners(&other, &bob),
            "nobody watches the other one"
        );
        let _owner = hub.subscribe_owner(&alice);
        assert!(hub.has_listeners(&other, &alice), "a watcher of its owner");
        let _all = hub.subscribe_all();
        assert!(hub.has_listeners(&other, &bob), "a watcher of everything");
    }
}
