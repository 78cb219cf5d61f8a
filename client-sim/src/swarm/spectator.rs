//! One spectator: subscribes to many owners' resources and checks, update by update, that each
//! resource's versions follow on with no gap and no repeat; measures delivery lag (commit time
//! in the view's `updated_at` → local receive time).

use crate::check::Seen;
use crate::conn;
use crate::metrics::unix_us_now;
use crate::swarm::SwarmEnv;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use warden::domain::{PlayerId, ResourceId, Role};
use warden::protocol::{ClientMessage, ServerMessage};

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
            let connected = conn::connect_patiently(
                &shared.config.url,
                &token,
                shared.config.reconnect_for,
                |_| {
                    shared.rec.error("connect_failed");
                    shared
                        .rec
                        .counters
                        .connect_failures
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                },
            );
            let (mut ws, welcome) = tokio::select! {
                _ = stop.cancelled() => return,
                connected = connected => match connected {
                    Ok(ok) => ok,
                    Err(_) => return,
                },
            };
            shared.rec.counters.connection_opened();
            let cap = welcome.limits.max_subscriptions.max(1) as usize;
            let subscriptions: Vec<ClientMessage> = if resumes == 0 {
                owners
                    .iter()
                    .take(cap)
                    .enumerate()
                    .map(|(i, owner)| {
                        ClientMessage::Subscribe(warden::protocol::Subscribe {
                            req: i as u64 + 1,
                            resource_id: None,
                            owner: Some(owner.clone()),
                            from_version: None,
                        })
                    })
                    .collect()
            } else {
                let seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
                seen.iter()
                    .take(cap)
                    .enumerate()
                    .map(|(i, (id, s))| {
                        ClientMessage::Subscribe(warden::protocol::Subscribe {
                            req: i as u64 + 1,
                            resource_id: Some(*id),
                            owner: None,
                            from_version: Some(s.last),
                        })
                    })
                    .collect()
            };
            let mut dropped = false;
            for msg in &subscriptions {
                if conn::send(&mut ws, msg).await.is_err() {
                    dropped = true;
                    break;
                }
            }
            while !dropped {
                let msg = tokio::select! {
                    _ = stop.cancelled() => break,
                    msg = conn::recv(&mut ws) => msg,
                };
                match msg {
                    Ok(msg) => self.on_message(&shared, msg),
                    Err(_) => dropped = true,
                }
            }
            shared.rec.counters.connection_closed();
            if !dropped {
                conn::close(ws).await;
                return;
            }
            shared.rec.error("spectator_dropped");
            resumes += 1;
            if stop.is_cancelled() {
                return;
            }
        }
    }

    fn on_message(&self, shared: &SwarmEnv, msg: ServerMessage) {
        match msg {
            ServerMessage::Subscribed { resources, .. } => {
                let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
                for r in resources {
                    seen.entry(r.id).or_insert_with(|| Seen::at(r.version));
                }
            }
            ServerMessage::Update {
                resource_id,
                base_version,
                version,
                resource,
                ..
            } => {
                let lag_us = unix_us_now() - resource.updated_at.millis() * 1000;
                shared
                    .rec
                    .update(Duration::from_micros(lag_us.max(0) as u64));
                // A resource not in any `subscribed` reply was created after subscribing: its
                // first update must start at version 0.
                self.seen
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .entry(resource_id)
                    .or_default()
                    .update(base_version, version);
            }
            ServerMessage::Error { code, .. } => shared.rec.error(code.as_str()),
            _ => {}
        }
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
