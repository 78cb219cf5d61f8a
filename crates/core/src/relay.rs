//! Cross-node delivery: makes this node's [`Hub`] carry the changes that *other* nodes commit to
//! a shared log, so a subscriber on node A sees what was committed through node B.
//!
//! The relay reads the store's [`CommitFeed`] (domain types only; the MongoDB store implements it)
//! and knows nothing of how a backend stores commits or streams them.
//!
//! The relay only makes the node *notice*; correctness rests on the per-resource log. Subscribers
//! drop versions they already have and read any gap from the log, so the relay may publish a
//! change twice or late, never wrongly.
//!
//! **What it watches.** Only resources someone on this node listens to: the hub's resource
//! topics, and for each owner topic the owner's resources as listed by the (shared) read model.
//! For each it keeps the state at the last version it has seen (a *tracker*). When it starts
//! tracking a resource it publishes the resource's latest commit once, which closes the window
//! between a subscriber reading the current view and the relay starting to watch.
//!
//! **How it notices.**
//! - *Notices* (where the feed can stream them; on MongoDB a change stream, which needs a replica
//!   set): a task follows the feed's notices of other nodes' commits and marks their resources
//!   dirty; the relay then reads those resources' commits after the tracked versions. After an
//!   interruption it reopens the stream from the last resume token (from scratch if the token is
//!   no longer usable) and re-reads every tracked resource once. A slow safety poll
//!   ([`RelayConfig::safety_poll`]) re-reads everything in case a stream dies silently.
//! - *Polling* (fallback when the feed cannot stream, as on a standalone `mongod` or nx-27017):
//!   every [`RelayConfig::poll_interval`] it reads the commits after each tracked version in
//!   batched reads of up to [`RelayConfig::resources_per_query`] resources each, and the resources
//!   of every subscribed owner the same way (one read per that many owners). Resources it starts
//!   tracking are loaded in batches too (their snapshots, then the commits after them). So a tick
//!   costs `ceil(resources / 1000) + ceil(owners / 1000)` reads with the defaults: 5 for 5,000
//!   watched resources, not 5,000.
//!
//! Commits this node made itself are folded into the trackers but not published: the actor that
//! made them already did. The read model needs no relay: each node writes the views of its own
//! commits into the shared read model in its commit path (see `store::mongo`).

use crate::domain::{self, PlayerId, ResourceId, ServerResource};
use crate::hub::{Change, Hub};
use crate::store::StoreError;
use crate::store::feed::{Commit, CommitFeed, ResumeToken};
use futures::StreamExt;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Tunables of the relay, with documented defaults.
#[derive(Clone, Debug)]
pub struct RelayConfig {
    /// How often the watched set is refreshed and, without change streams, the log is polled.
    pub poll_interval: Duration,
    /// Follow the feed's stream of notices first (on MongoDB a change stream); poll when it
    /// cannot be opened.
    pub change_streams: bool,
    /// How long to wait before trying to open the stream again after a failure.
    pub stream_retry: Duration,
    /// With a stream open, every tracked resource is still re-read this often.
    pub safety_poll: Duration,
    /// Tracked resources (or subscribed owners) per read of the feed; at most 1,000.
    pub resources_per_query: usize,
    /// Most commits one read of the feed returns; the rest come at the next round.
    pub commits_per_query: usize,
    /// Notices waiting for the relay. When full, further notices are dropped and the relay
    /// re-reads every tracked resource instead (nothing is lost, only batched).
    pub notice_queue: usize,
}

impl Default for RelayConfig {
    fn default() -> Self {
        Self {
            poll_interval: Duration::from_millis(50),
            change_streams: true,
            stream_retry: Duration::from_secs(5),
            safety_poll: Duration::from_secs(5),
            resources_per_query: 1000,
            commits_per_query: 1000,
            notice_queue: 4096,
        }
    }
}

/// A running relay; stop it with [`Relay::stop`].
#[derive(Debug)]
pub struct Relay {
    stop: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
    /// True while a stream of notices is open (otherwise the relay polls).
    streaming: Arc<AtomicBool>,
    /// Ticks of the relay's loop so far (to relate queries to ticks).
    ticks: Arc<AtomicU64>,
}

/// What the relay's loop and the notice task share.
struct RelayEnv {
    feed: Arc<dyn CommitFeed>,
    hub: Arc<Hub>,
    config: RelayConfig,
    streaming: Arc<AtomicBool>,
    ticks: Arc<AtomicU64>,
    /// Set when notices were dropped or a stream (re)opened: re-read every tracked resource.
    resync: AtomicBool,
}

impl Relay {
    /// Starts relaying other nodes' commits, as `feed` shows them, into `hub`. Needs a tokio
    /// runtime.
    pub fn start(feed: Arc<dyn CommitFeed>, hub: Arc<Hub>, config: RelayConfig) -> Self {
        let stop = CancellationToken::new();
        let streaming = Arc::new(AtomicBool::new(false));
        let ticks = Arc::new(AtomicU64::new(0));
        let (notices_tx, notices_rx) = mpsc::channel(config.notice_queue.max(1));
        let shared = Arc::new(RelayEnv {
            feed,
            hub,
            streaming: streaming.clone(),
            ticks: ticks.clone(),
            resync: AtomicBool::new(false),
            config,
        });
        let mut tasks = vec![tokio::spawn(run(shared.clone(), notices_rx, stop.clone()))];
        if shared.config.change_streams {
            tasks.push(tokio::spawn(follow_notices(
                shared,
                notices_tx,
                stop.clone(),
            )));
        }
        Self {
            stop,
            tasks,
            streaming,
            ticks,
        }
    }

    /// Ticks of the relay's loop so far (each refreshes what is watched and, when polling, reads
    /// the log once).
    pub fn ticks(&self) -> u64 {
        self.ticks.load(Ordering::Relaxed)
    }

    /// True while a stream of notices feeds the relay (false: it polls the log).
    pub fn is_streaming(&self) -> bool {
        self.streaming.load(Ordering::Relaxed)
    }

    /// Stops the relay and waits for its tasks.
    pub async fn stop(self) {
        self.stop.cancel();
        for task in self.tasks {
            let _ = task.await;
        }
    }
}

/// The relay's loop: refresh what is watched, read the log where something may have happened,
/// publish other nodes' commits.
async fn run(
    shared: Arc<RelayEnv>,
    mut notices: mpsc::Receiver<ResourceId>,
    stop: CancellationToken,
) {
    let mut relay = Trackers {
        shared: shared.clone(),
        trackers: HashMap::new(),
        owners: HashMap::new(),
    };
    let mut tick = tokio::time::interval(shared.config.poll_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_full = tokio::time::Instant::now();
    let mut failing = false;
    loop {
        let mut dirty = HashSet::new();
        let mut full = false;
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {
                relay.refresh_watched().await;
                shared.ticks.fetch_add(1, Ordering::Relaxed);
                let streaming = shared.streaming.load(Ordering::Relaxed);
                full = !streaming || last_full.elapsed() >= shared.config.safety_poll;
            }
            Some(id) = notices.recv() => {
                dirty.insert(id);
                while let Ok(id) = notices.try_recv() {
                    dirty.insert(id);
                }
            }
        }
        if shared.resync.swap(false, Ordering::Relaxed) {
            full = true;
        }
        let outcome = if full {
            last_full = tokio::time::Instant::now();
            relay.poll(None).await
        } else if dirty.is_empty() {
            Ok(())
        } else {
            relay.poll(Some(&dirty)).await
        };
        match outcome {
            Ok(()) if failing => {
                failing = false;
                tracing::info!("relay reads the log again");
            }
            Ok(()) => {}
            Err(e) => {
                if !failing {
                    tracing::warn!(error = %e, "relay cannot read the log; will retry");
                }
                failing = true;
                // What was not read is read at the next full poll.
                shared.resync.store(true, Ordering::Relaxed);
            }
        }
    }
}

/// The resources the relay watches and the state it last saw of each.
struct Trackers {
    shared: Arc<RelayEnv>,
    /// Resource → its state at the last version the relay has seen (`None`: no events yet).
    trackers: HashMap<ResourceId, Option<ServerResource>>,
    /// Subscribed owner → their resources as last listed by the read model.
    owners: HashMap<PlayerId, Vec<ResourceId>>,
}

impl Trackers {
    /// Starts tracking newly subscribed resources and forgets those nobody listens to any more.
    async fn refresh_watched(&mut self) {
        let per_query = self.per_query();
        let hub = &self.shared.hub;
        let mut watched: HashSet<ResourceId> = hub.subscribed_resources().into_iter().collect();
        let owners = hub.subscribed_owners();
        self.owners.retain(|o, _| owners.contains(o));
        for chunk in owners.chunks(per_query) {
            match self.shared.feed.resources_of_owners(chunk).await {
                Ok(listed) => self.owners.extend(listed),
                // Keep the last lists; the next tick tries again.
                Err(e) => tracing::debug!(error = %e, "relay cannot list owners' resources"),
            }
        }
        watched.extend(self.owners.values().flatten().copied());
        self.trackers.retain(|id, _| watched.contains(id));
        let new: Vec<ResourceId> = watched
            .into_iter()
            .filter(|id| !self.trackers.contains_key(id))
            .collect();
        for chunk in new.chunks(per_query) {
            if let Err(e) = self.start_tracking(chunk).await {
                // Not tracked yet; the next tick tries again.
                tracing::debug!(error = %e, "relay cannot load resources to track");
            }
        }
    }

    fn per_query(&self) -> usize {
        self.shared.config.resources_per_query.clamp(1, 1000)
    }

    /// Loads resources (their snapshots, then the commits from the snapshot's own on, in two
    /// reads) and announces each one's latest commit once (see the module doc).
    async fn start_tracking(&mut self, ids: &[ResourceId]) -> Result<(), StoreError> {
        let feed = &self.shared.feed;
        let mut snapshots = feed.snapshots(ids).await?;
        // From the commit that ends at the snapshot's version, so it can be announced.
        let after: Vec<(ResourceId, u64)> = ids
            .iter()
            .map(|id| (*id, snapshots.get(id).map_or(0, |s| s.version - 1)))
            .collect();
        let commits = feed
            .commits_after(&after, self.shared.config.commits_per_query)
            .await?;
        let mut by_resource: HashMap<ResourceId, Vec<Commit>> = HashMap::new();
        for commit in commits {
            by_resource
                .entry(commit.resource_id)
                .or_default()
                .push(commit);
        }
        for id in ids {
            let mut state = snapshots.remove(id);
            let mut latest = None;
            for commit in by_resource.remove(id).unwrap_or_default() {
                let at = state.as_ref().map_or(0, |s| s.version);
                if commit.last_version > at {
                    if commit.first_version != at + 1 {
                        break;
                    }
                    state = domain::replay(state, &commit.events);
                }
                latest = Some(commit);
            }
            if let (Some(state), Some(commit)) = (&state, latest)
                && commit.last_version == state.version
            {
                self.shared
                    .hub
                    .publish(Arc::new(Change::new(commit.events, state.clone())));
            }
            self.trackers.insert(*id, state);
        }
        Ok(())
    }

    /// Reads the log after each tracked version (all of them, or only `only`) and publishes the
    /// commits other nodes made.
    async fn poll(&mut self, only: Option<&HashSet<ResourceId>>) -> Result<(), StoreError> {
        let known: Vec<(ResourceId, u64)> = self
            .trackers
            .iter()
            .filter(|(id, _)| only.is_none_or(|o| o.contains(id)))
            .map(|(id, state)| (*id, state.as_ref().map_or(0, |s| s.version)))
            .collect();
        for chunk in known.chunks(self.per_query()) {
            let commits = self
                .shared
                .feed
                .commits_after(chunk, self.shared.config.commits_per_query)
                .await?;
            for commit in commits {
                self.fold(commit).await;
            }
        }
        Ok(())
    }

    /// Advances one tracker by one commit, publishing it if another node made it.
    async fn fold(&mut self, commit: Commit) {
        let id = commit.resource_id;
        let Some(state) = self.trackers.get_mut(&id) else {
            return;
        };
        let at = state.as_ref().map_or(0, |s| s.version);
        if commit.last_version <= at {
            return;
        }
        if commit.first_version != at + 1 {
            // Cannot happen with a gapless log; start over from the store rather than guess.
            tracing::warn!(resource = %id, at, first = commit.first_version, "relay re-tracks");
            self.trackers.remove(&id);
            return;
        }
        let next = domain::replay(state.take(), &commit.events);
        *state = next.clone();
        if !commit.by_this_node
            && let Some(next) = next
        {
            self.shared
                .hub
                .publish(Arc::new(Change::new(commit.events, next)));
        }
    }
}

/// Follows the feed's notices of other nodes' commits and passes their resource ids to the
/// relay. Retries every [`RelayConfig::stream_retry`] while the feed cannot stream.
async fn follow_notices(
    shared: Arc<RelayEnv>,
    notices: mpsc::Sender<ResourceId>,
    stop: CancellationToken,
) {
    let mut token: Option<ResumeToken> = None;
    let mut reported = false;
    loop {
        match shared.feed.notices(token.clone()).await {
            Ok(mut stream) => {
                tracing::info!("relay follows a change stream of other nodes' commits");
                reported = false;
                shared.streaming.store(true, Ordering::Relaxed);
                // Whatever happened while no stream was open is read from the log.
                shared.resync.store(true, Ordering::Relaxed);
                loop {
                    let next = tokio::select! {
                        _ = stop.cancelled() => return,
                        next = stream.next() => next,
                    };
                    match next {
                        Some(Ok(notice)) => {
                            if notice.resume.is_some() {
                                token = notice.resume;
                            }
                            if notices.try_send(notice.resource_id).is_err() {
                                shared.resync.store(true, Ordering::Relaxed);
                            }
                        }
                        Some(Err(e)) => {
                            tracing::warn!(error = %e, "change stream interrupted; reopening");
                            break;
                        }
                        None => break,
                    }
                }
                shared.streaming.store(false, Ordering::Relaxed);
            }
            Err(e) => {
                if token.take().is_some() {
                    // Perhaps the token is too old: open afresh (the resync covers the gap).
                    tracing::warn!(error = %e, "cannot resume the change stream; starting anew");
                    continue;
                }
                if !reported {
                    tracing::info!(
                        error = %e,
                        "change streams unavailable; the relay polls the log every {:?}",
                        shared.config.poll_interval
                    );
                    reported = true;
                }
            }
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(shared.config.stream_retry) => {}
        }
    }
}

#[cfg(test)]
mod tests;
