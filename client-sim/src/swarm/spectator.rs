//! One spectator: subscribes to many owners' resources and checks, update by update, that each
//! resource's versions follow on with no gap and no repeat; measures delivery lag (commit time
//! in the view's `updated_at` → local receive time).
//!
//! It uses `warden-client`'s [`Client`] and subscriptions, but resumes by itself: after a drop it
//! opens a new client and subscribes to each resource it saw with `from_version` = the last
//! version *it recorded* (not `Client::reconnect`, which would resume owner subscriptions with
//! the current views), so every resume exercises the server's replay from the log, and the
//! gap/repeat check covers it.

use crate::check::Seen;
use crate::metrics::unix_us_now;
use crate::swarm::SwarmEnv;
use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use warden_client::{Client, ClientError, Connection, Subscription, Update};
use warden_protocol::{PlayerId, ResourceId, Role};

/// What a spectator saw, shared with the orchestrator, which waits for it to catch up with the
/// final versions. Locked only for a map update, never across `.await`.
pub type SeenMap = Arc<Mutex<HashMap<ResourceId, Seen>>>;

#[derive(Debug)]
pub struct Spectator {
    pub name: String,
    pub seen: SeenMap,
}

impl Spectator {
    pub fn new(index: usize) -> Self {
        Self {
            name: format!("spectator-{index:04}"),
            seen: Arc::default(),
        }
    }

    /// Connects, subscribes to `owners`, and records updates until `stop`. If the connection
    /// drops (a slow consumer closed, a server restart), it reconnects (trying for up to
    /// `reconnect_for` each time) and resumes each resource with `from_version` = the last
    /// version it saw, as docs/protocol.md prescribes, as often as needed.
    pub async fn run(
        self: Arc<Self>,
        shared: Arc<SwarmEnv>,
        owners: Vec<PlayerId>,
        stop: CancellationToken,
    ) {
        let token = crate::tokens::mint(&shared.keys, &self.name, Role::Spectator);
        let mut resumes = 0;
        loop {
            let Some(client) = connect(&shared, &token, &stop).await else {
                return;
            };
            shared.rec.counters.connection_opened();
            let subscriptions = self.subscribe(&shared, &client, &owners, resumes).await;
            let dropped = self.follow(&shared, &client, subscriptions, &stop).await;
            shared.rec.counters.connection_closed();
            if !dropped {
                client.close().await;
                return;
            }
            shared.rec.error("spectator_dropped");
            resumes += 1;
            if stop.is_cancelled() {
                return;
            }
        }
    }

    /// Subscribes, up to the server's subscription limit: the first time to `owners`; after a
    /// drop to each resource seen, from the last version seen. The snapshots of the replies
    /// start what [`Seen`] tracks.
    async fn subscribe(
        &self,
        shared: &SwarmEnv,
        client: &Client,
        owners: &[PlayerId],
        resumes: u32,
    ) -> Vec<Subscription> {
        let cap = client.welcome().limits.max_subscriptions.max(1) as usize;
        type Ask<'a> = BoxFuture<'a, Result<Subscription, ClientError>>;
        let asks: Vec<Ask<'_>> = if resumes == 0 {
            owners
                .iter()
                .take(cap)
                .map(|owner| client.subscribe_owner(owner.clone()).boxed())
                .collect()
        } else {
            let from: Vec<(ResourceId, u64)> = self
                .seen
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .iter()
                .take(cap)
                .map(|(id, s)| (*id, s.last))
                .collect();
            from.into_iter()
                .map(|(id, last)| client.subscribe_resource(id, Some(last)).boxed())
                .collect()
        };
        let mut subscriptions = Vec::new();
        for answer in futures::future::join_all(asks).await {
            match answer {
                Ok(sub) => {
                    let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
                    for r in sub.snapshot() {
                        seen.entry(r.id).or_insert_with(|| Seen::at(r.version));
                    }
                    subscriptions.push(sub);
                }
                Err(e) => shared
                    .rec
                    .error(e.code().map_or("subscribe_failed", |c| c.as_str())),
            }
        }
        subscriptions
    }

    /// Records updates until `stop` (false) or until the connection ends (true).
    async fn follow(
        &self,
        shared: &SwarmEnv,
        client: &Client,
        subscriptions: Vec<Subscription>,
        stop: &CancellationToken,
    ) -> bool {
        let mut updates = futures::stream::select_all(subscriptions);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return false,
                _ = client.closed() => return true,
                Some(update) = updates.next(), if !updates.is_empty() => {
                    self.on_update(shared, update);
                }
            }
        }
    }

    fn on_update(&self, shared: &SwarmEnv, update: Update) {
        let lag_us = unix_us_now() - update.resource.updated_at.millis() * 1000;
        shared
            .rec
            .update(Duration::from_micros(lag_us.max(0) as u64));
        // A resource not in any `subscribed` reply was created after subscribing: its first
        // update must start at version 0.
        self.seen
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(update.resource_id)
            .or_default()
            .update(update.base_version, update.version);
    }

    /// The last version seen of `id`, if watched.
    pub fn last_seen(&self, id: &ResourceId) -> Option<u64> {
        self.seen
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(id)
            .map(|s| s.last)
    }
}

/// A client for a spectator, connecting patiently (up to `reconnect_for`); `None` if it could
/// not, or `stop` fired first.
async fn connect(shared: &SwarmEnv, token: &str, stop: &CancellationToken) -> Option<Client> {
    let url = &shared.config.url;
    let config = shared.config.client_config();
    let connected =
        Connection::connect_patiently(url, token, &config, shared.config.reconnect_for, |_| {
            shared.rec.error("connect_failed");
            shared
                .rec
                .counters
                .connect_failures
                .fetch_add(1, Ordering::Relaxed);
        });
    tokio::select! {
        _ = stop.cancelled() => None,
        connected = connected => connected
            .ok()
            .map(|conn| Client::from_connection(conn, url, token, config)),
    }
}
