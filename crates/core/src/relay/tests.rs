//! The relay against an in-memory feed. Guards the path no test server here can run
//! (nx-27017 has no change streams): following notices, skipping this node's own commits, and
//! reopening an interrupted stream from the last resume token.

use super::*;
use crate::domain::{Balance, CommandId, ResourceEvent, Timestamp, stamp};
use crate::store::feed::{Notice, Notices};
use async_trait::async_trait;
use futures::channel::mpsc::{UnboundedSender, unbounded};
use std::collections::VecDeque;
use std::sync::Mutex;

const PATIENCE: Duration = Duration::from_secs(5);

/// A shared log in memory; the test appends commits and sends notices by hand.
#[derive(Default)]
struct FakeFeed {
    commits: Mutex<Vec<Commit>>,
    /// What the next calls of `notices` return, in order; none left: the feed cannot stream.
    streams: Mutex<VecDeque<Notices>>,
    /// The resume token each call of `notices` was given.
    opened_with: Mutex<Vec<Option<&'static str>>>,
}

impl FakeFeed {
    /// A stream the next `notices` call hands out, and the sender that feeds it.
    fn next_stream(&self) -> UnboundedSender<Result<Notice, StoreError>> {
        let (tx, rx) = unbounded();
        self.streams.lock().unwrap().push_back(rx.boxed());
        tx
    }

    /// Commits `event` at `version` of `id`, made by another node unless `by_this_node`.
    fn commit(&self, id: ResourceId, version: u64, event: ResourceEvent, by_this_node: bool) {
        let events = stamp(
            id,
            version - 1,
            CommandId::new(),
            crate::domain::Role::Player,
            Timestamp(1_000),
            vec![event],
        );
        self.commits.lock().unwrap().push(Commit {
            resource_id: id,
            first_version: version,
            last_version: version,
            by_this_node,
            events,
        });
    }
}

#[async_trait]
impl CommitFeed for FakeFeed {
    async fn commits_after(
        &self,
        known: &[(ResourceId, u64)],
        limit: usize,
    ) -> Result<Vec<Commit>, StoreError> {
        let mut found: Vec<Commit> = self
            .commits
            .lock()
            .unwrap()
            .iter()
            .filter(|c| {
                known
                    .iter()
                    .any(|(id, v)| c.resource_id == *id && c.last_version > *v)
            })
            .cloned()
            .collect();
        found.sort_by_key(|c| (c.resource_id, c.last_version));
        found.truncate(limit);
        Ok(found)
    }

    async fn snapshots(
        &self,
        _: &[ResourceId],
    ) -> Result<HashMap<ResourceId, ServerResource>, StoreError> {
        Ok(HashMap::new())
    }

    async fn resources_of_owners(
        &self,
        owners: &[PlayerId],
    ) -> Result<HashMap<PlayerId, Vec<ResourceId>>, StoreError> {
        Ok(owners.iter().map(|o| (o.clone(), Vec::new())).collect())
    }

    async fn notices(&self, resume: Option<ResumeToken>) -> Result<Notices, StoreError> {
        let resume = resume.map(|t| *t.get::<&'static str>().expect("a token of this feed"));
        self.opened_with.lock().unwrap().push(resume);
        self.streams
            .lock()
            .unwrap()
            .pop_front()
            .ok_or(StoreError::Closed)
    }
}

fn created() -> ResourceEvent {
    ResourceEvent::ResourceCreated {
        name: None,
        owner: PlayerId::new("alice"),
        resource_type: "gold".into(),
        max_amount: 100,
        regen_milli: 0,
        balance: balance(0),
        by: PlayerId::new("alice"),
    }
}

fn added(total: u64) -> ResourceEvent {
    ResourceEvent::ResourceAdded {
        amount: 1,
        reason: "relay".into(),
        balance: balance(total),
        by: PlayerId::new("alice"),
    }
}

fn balance(amount: u64) -> Balance {
    Balance {
        amount,
        regen_carry: 0,
        regen_at: Timestamp(1_000),
    }
}

fn notice(id: ResourceId, token: &'static str) -> Result<Notice, StoreError> {
    Ok(Notice {
        resource_id: id,
        resume: Some(ResumeToken::new(token)),
    })
}

async fn next_version(rx: &mut tokio::sync::broadcast::Receiver<Arc<Change>>) -> u64 {
    tokio::time::timeout(PATIENCE, rx.recv())
        .await
        .expect("the relay publishes")
        .expect("the topic is open")
        .version()
}

#[tokio::test]
async fn notices_bring_other_nodes_commits_and_a_broken_stream_resumes_from_its_last_token() {
    // Given a resource created by another node, a subscriber to it, and a feed that streams,
    let feed = Arc::new(FakeFeed::default());
    let id = ResourceId::new();
    feed.commit(id, 1, created(), false);
    let first = feed.next_stream();
    let hub = Arc::new(Hub::new());
    let mut rx = hub.subscribe_resource(id);
    // (ticks only at the start: after that, only notices make the relay read)
    let relay = Relay::start(
        feed.clone(),
        hub.clone(),
        RelayConfig {
            poll_interval: Duration::from_secs(3600),
            safety_poll: Duration::from_secs(3600),
            stream_retry: Duration::from_millis(10),
            ..RelayConfig::default()
        },
    );
    // the relay announces the resource once it tracks it, and follows the stream.
    assert_eq!(next_version(&mut rx).await, 1);
    tokio::time::timeout(PATIENCE, async {
        while !relay.is_streaming() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("the relay follows the stream");

    // When another node commits version 2 and the stream tells of it,
    feed.commit(id, 2, added(1), false);
    first.unbounded_send(notice(id, "t2")).unwrap();
    // then the subscriber hears it.
    assert_eq!(next_version(&mut rx).await, 2);

    // When this node commits version 3 (its actor has published it) and another node version
    // 4, told by the stream,
    feed.commit(id, 3, added(2), true);
    feed.commit(id, 4, added(3), false);
    first.unbounded_send(notice(id, "t4")).unwrap();
    // then the relay publishes only the other node's commit.
    assert_eq!(next_version(&mut rx).await, 4);

    // When the stream breaks,
    let second = feed.next_stream();
    first
        .unbounded_send(Err(StoreError::NoOutcome("stream broken by the test")))
        .unwrap();
    // the relay reopens it from the last token it saw,
    tokio::time::timeout(PATIENCE, async {
        while feed.opened_with.lock().unwrap().len() < 2 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("the relay reopens the stream");
    assert_eq!(*feed.opened_with.lock().unwrap(), vec![None, Some("t4")]);
    // and goes on hearing other nodes' commits through the new one.
    feed.commit(id, 5, added(4), false);
    second.unbounded_send(notice(id, "t5")).unwrap();
    assert_eq!(next_version(&mut rx).await, 5);
    relay.stop().await;
}

#[tokio::test]
async fn without_a_stream_the_relay_polls_the_feed() {
    // Given a feed that cannot stream and a subscriber to a resource another node created,
    let feed = Arc::new(FakeFeed::default());
    let id = ResourceId::new();
    feed.commit(id, 1, created(), false);
    let hub = Arc::new(Hub::new());
    let mut rx = hub.subscribe_resource(id);
    let relay = Relay::start(
        feed.clone(),
        hub.clone(),
        RelayConfig {
            poll_interval: Duration::from_millis(10),
            ..RelayConfig::default()
        },
    );
    assert_eq!(next_version(&mut rx).await, 1);
    // when another node commits,
    feed.commit(id, 2, added(1), false);
    // then a poll finds it, with no notice.
    assert_eq!(next_version(&mut rx).await, 2);
    assert!(!relay.is_streaming());
    relay.stop().await;
}
