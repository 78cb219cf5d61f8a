//! Live subscriptions over a real socket: every version in order with no gap and no repeat, the
//! right view for each audience, resume after a drop, and the slow-consumer policy.

use warden_testkit as support;

use futures::SinkExt;
use support::{Client, LocalServer, applied, error_code};
use warden_core::domain::{ClientResource, CommandId, ResourceId, Role};
use warden_core::store::EventStore;
use warden_net::{NetConfig, NetStats};
use warden_protocol::ErrorCode;
use warden_protocol::{ClientMessage, ServerMessage};

/// Reads updates of `id` until `head`, checking each follows the previous with no gap or repeat.
/// Returns every view received.
async fn follow(c: &mut Client, id: ResourceId, mut last: u64, head: u64) -> Vec<ClientResource> {
    let mut seen = Vec::new();
    while last < head {
        match c.next_update().await.expect("connection open") {
            ServerMessage::Update {
                resource_id,
                base_version,
                version,
                resource,
                ..
            } => {
                assert_eq!(resource_id, id);
                assert_eq!(base_version, last, "no gap, no repeat");
                assert!(version > base_version);
                assert_eq!(resource.version, version);
                last = version;
                seen.push(resource);
            }
            _ => unreachable!(),
        }
    }
    seen
}

fn subscribed_version(reply: &ServerMessage) -> u64 {
    match reply {
        ServerMessage::Subscribed { resources, .. } => resources[0].version,
        other => panic!("expected subscribed, got {other:?}"),
    }
}

// Guards against: subscribers missing, repeating or reordering changes under concurrent writers,
// and spectators seeing what only the owner may (lock reasons, regeneration).
#[tokio::test]
async fn every_subscriber_sees_every_version_in_order_in_its_own_view() {
    let server = LocalServer::start().await;
    let mut owner = server.connect("alice", Role::Player).await;
    let id = owner.create_id("gold").await;
    let mut owner_sub = server.connect("alice", Role::Player).await;
    let mut spectators = vec![
        server.connect("eve", Role::Spectator).await,
        server.connect("bob", Role::Player).await,
    ];
    let start = subscribed_version(&owner_sub.subscribe(id, None).await);
    for s in &mut spectators {
        assert_eq!(subscribed_version(&s.subscribe(id, None).await), start);
    }
    // Four writers at once: two sessions of the owner, two of a service; some lock and unlock.
    let mut writers = Vec::new();
    for (i, (who, role)) in [
        ("alice", Role::Player),
        ("alice", Role::Player),
        ("shop", Role::Service),
        ("shop", Role::Service),
    ]
    .into_iter()
    .enumerate()
    {
        let mut w = server.connect(who, role).await;
        writers.push(tokio::spawn(async move {
            for n in 0..60u64 {
                let reply = match (i, n % 10) {
                    (0, 5) => w.lock(id, "raid in progress", 60_000).await,
                    (0, 6) => w.unlock(id).await,
                    _ if n % 2 == 0 => w.add(id, 1).await,
                    _ => w.allocate(id, 1).await,
                };
                if let ServerMessage::Error { code, .. } = &reply {
                    // Only the lock may refuse a command here.
                    assert!(
                        matches!(
                            code,
                            ErrorCode::Locked | ErrorCode::AlreadyLocked | ErrorCode::NotLocked
                        ),
                        "{code}"
                    );
                }
            }
        }));
    }
    for w in writers {
        w.await.unwrap();
    }
    let head = server.store().head(id).await.unwrap();
    assert!(head > 200, "most commands committed");

    let owner_views = follow(&mut owner_sub, id, start, head).await;
    assert!(owner_views.iter().all(|v| v.regen_milli.is_some()));
    assert!(
        owner_views
            .iter()
            .any(|v| v.lock_reason.as_deref() == Some("raid in progress"))
    );
    for s in &mut spectators {
        let views = follow(s, id, start, head).await;
        assert!(
            views.iter().any(|v| v.locked),
            "spectators see that it is locked"
        );
        assert!(views.iter().all(|v| v.lock_reason.is_none()
            && v.lock_expires_at.is_none()
            && v.regen_milli.is_none()));
    }
    server.stop().await;
}

// Guards against: an owner subscription missing resources created after it started.
#[tokio::test]
async fn an_owner_subscription_covers_existing_and_new_resources() {
    let server = LocalServer::start().await;
    let mut alice = server.connect("alice", Role::Player).await;
    let gold = alice.create_id("gold").await;
    // Make sure the read model lists it before subscribing by owner.
    while !matches!(alice.list(None).await, ServerMessage::Resources { ref resources, .. } if resources.len() == 1)
    {
    }
    let mut watcher = server.connect("eve", Role::Spectator).await;
    match watcher.subscribe_owner("alice").await {
        ServerMessage::Subscribed { resources, .. } => {
            assert_eq!(resources.len(), 1);
            assert_eq!(resources[0].id, gold);
        }
        other => panic!("{other:?}"),
    }
    let wood = alice.create_id("wood").await;
    alice.add(wood, 7).await;
    alice.allocate(gold, 1).await;
    let mut got = Vec::new();
    for _ in 0..3 {
        match watcher.next_update().await.unwrap() {
            ServerMessage::Update {
                resource_id,
                base_version,
                version,
                ..
            } => got.push((resource_id, base_version, version)),
            _ => unreachable!(),
        }
    }
    assert_eq!(got, [(wood, 0, 1), (wood, 1, 2), (gold, 1, 2)]);
    server.stop().await;
}

// Guards against: changes made while a client was disconnected being lost or delivered twice.
#[tokio::test]
async fn resume_after_a_dropped_connection_delivers_missed_changes_exactly_once() {
    let server = LocalServer::start().await;
    let mut writer = server.connect("alice", Role::Player).await;
    let id = writer.create_id("gold").await;
    let mut reader = server.connect("alice", Role::Player).await;
    let start = subscribed_version(&reader.subscribe(id, None).await);
    writer.add(id, 1).await;
    writer.add(id, 1).await;
    let views = follow(&mut reader, id, start, 3).await;
    let have = views.last().unwrap().version;
    drop(reader); // the connection drops

    for _ in 0..5 {
        writer.allocate(id, 1).await;
    }
    let mut reader = server.connect("alice", Role::Player).await;
    match reader.subscribe(id, Some(have)).await {
        ServerMessage::Subscribed { resources, .. } => assert!(resources.is_empty()),
        other => panic!("{other:?}"),
    }
    let missed = follow(&mut reader, id, have, 8).await;
    assert_eq!(
        missed.iter().map(|v| v.version).collect::<Vec<_>>(),
        [4, 5, 6, 7, 8]
    );
    assert_eq!(missed.last().unwrap().amount, 1000 + 2 - 5);
    // Then live ones, continuing the same sequence.
    writer.add(id, 3).await;
    let live = follow(&mut reader, id, 8, 9).await;
    assert_eq!(live[0].amount, 1000);
    // Nothing else arrives: a ping round-trip finds no stray update queued before the pong.
    let req = reader.next_req();
    reader
        .send(&ClientMessage::Ping(warden_protocol::Ping { req }))
        .await;
    assert!(matches!(
        reader.recv().await,
        Some(ServerMessage::Pong { .. })
    ));
    assert_eq!(
        error_code(&reader.subscribe(id, Some(10)).await),
        ErrorCode::InvalidFromVersion
    );
    server.stop().await;
}

// Guards against: a client that stops reading slowing everyone else down or growing the server's
// memory without bound.
#[tokio::test]
async fn a_subscriber_that_never_reads_is_cut_off_and_others_are_not_delayed() {
    let config = NetConfig {
        outbound_queue: 8,
        commands_per_second: 0,
        ..NetConfig::default()
    };
    let server = LocalServer::start_with(config).await;
    let mut writer = server.connect("alice", Role::Player).await;
    let id = writer.create_id("wood").await;

    // The slow client: a tiny receive buffer, one subscription, then it reads nothing.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let stream = socket.connect(server.addr).await.unwrap();
    let url = server.url(&server.token("slowpoke", Role::Spectator));
    let (mut slow, _) =
        tokio_tungstenite::client_async(url, tokio_tungstenite::MaybeTlsStream::Plain(stream))
            .await
            .unwrap();
    // Many subscriptions to the same resource: each change is queued once per subscription, so
    // its queue fills quickly.
    for req in 1..=32 {
        let subscribe = ClientMessage::Subscribe(warden_protocol::Subscribe {
            req,
            resource_id: Some(id),
            owner: None,
            from_version: None,
        });
        slow.send(tokio_tungstenite::tungstenite::Message::Binary(
            warden_protocol::encode(&subscribe).into(),
        ))
        .await
        .unwrap();
    }

    let mut fast = server.connect("eve", Role::Spectator).await;
    let start = subscribed_version(&fast.subscribe(id, None).await);

    // Write (4 in flight at a time, so a burst of updates fits the fast subscriber's queue of 8:
    // an actor commits the commands waiting in its mailbox together) until the server has given
    // up on the slow client.
    const IN_FLIGHT: u64 = 4;
    let mut sent = 0u64;
    while NetStats::get(&server.stats.slow_consumers) == 0 {
        assert!(sent < 200_000, "the slow consumer was never cut off");
        let mut reqs = Vec::new();
        for n in 0..IN_FLIGHT {
            let req = writer.next_req();
            let msg = if n % 2 == 0 {
                ClientMessage::Add(warden_protocol::Add {
                    req,
                    command_id: CommandId::new(),
                    resource_id: id,
                    amount: 1,
                    reason: String::new(),
                })
            } else {
                ClientMessage::Allocate(warden_protocol::Allocate {
                    req,
                    command_id: CommandId::new(),
                    resource_id: id,
                    amount: 1,
                    reason: String::new(),
                })
            };
            writer.send(&msg).await;
            reqs.push(req);
        }
        for req in reqs {
            applied(&writer.reply_to(req).await);
        }
        sent += IN_FLIGHT;
        // The fast subscriber keeps up the whole time.
        follow(&mut fast, id, start + sent - IN_FLIGHT, start + sent).await;
    }
    let head = server.store().head(id).await.unwrap();
    assert_eq!(head, start + sent);

    // The slow client finds its stream ended; if the close frame got through, it says why.
    use futures::StreamExt;
    loop {
        match tokio::time::timeout(support::PATIENCE, slow.next())
            .await
            .expect("ends")
        {
            Some(Ok(tokio_tungstenite::tungstenite::Message::Close(frame))) => {
                if let Some(frame) = frame {
                    assert_eq!(u16::from(frame.code), 4008);
                }
                break;
            }
            Some(Ok(_)) => continue,
            None | Some(Err(_)) => break,
        }
    }
    assert_eq!(NetStats::get(&server.stats.slow_consumers), 1);
    server.stop().await;
}

// Guards against: trusting the hub for completeness. Changes committed by another writer that
// published elsewhere (another node, an overlapping actor) must still reach subscribers, from the
// log, in order, before anything newer.
#[tokio::test]
async fn changes_the_hub_never_saw_are_read_from_the_log() {
    let server = LocalServer::start().await;
    let mut alice = server.connect("alice", Role::Player).await;
    let id = alice.create_id("gold").await;
    let mut watcher = server.connect("eve", Role::Spectator).await;
    let start = subscribed_version(&watcher.subscribe(id, None).await);

    // A second writer on the same store whose changes go to a hub nobody here listens to.
    let elsewhere = support::bare_registry(server.store().clone(), server.clock());
    for _ in 0..3 {
        let reply = support::execute(&elsewhere, &support::alice(), support::add(id, 10)).await;
        reply.expect("committed elsewhere");
    }
    // One change through this node: its base (4) is past what the watcher has (1).
    assert_eq!(applied(&alice.add(id, 1).await).version, start + 4);
    let views = follow(&mut watcher, id, start, start + 4).await;
    assert_eq!(
        views
            .iter()
            .map(|v| (v.version, v.amount))
            .collect::<Vec<_>>(),
        [(2, 1010), (3, 1020), (4, 1030), (5, 1031)]
    );
    elsewhere.shutdown().await;
    server.stop().await;
}
