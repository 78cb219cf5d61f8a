//! Resume over a real socket when far behind: the missed changes come from the log at the
//! client's reading speed (flow control), with no gap and no repeat, then live ones; a slow
//! consumer that was closed with 4008 can always catch up by resuming.

use warden_testkit as support;

use futures::{StreamExt, stream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use support::{Client, LocalServer, PATIENCE, applied};
use warden_core::actor::CommandRequest;
use warden_core::domain::Role;
use warden_core::domain::{
    AddResource, AllocateResource, Command, CommandId, Principal, ResourceId,
};
use warden_core::node::Node;
use warden_core::store::EventStore;
use warden_net::{NetConfig, NetStats};
use warden_protocol::ServerMessage;

/// Commands written through the node's actors (not over the wire) to make a long log quickly:
/// many in flight, so the actor commits them in large groups.
async fn write_through_core(node: &Arc<Node>, id: ResourceId, count: u64) {
    stream::iter(0..count)
        .map(|n| {
            let node = node.clone();
            async move {
                node.registry()
                    .execute(change(id, n))
                    .await
                    .expect("committed");
            }
        })
        .buffer_unordered(512)
        .collect::<()>()
        .await;
}

/// Adds and spends 1 in turn, so the amount stays near where it started.
fn change(id: ResourceId, n: u64) -> CommandRequest {
    let command = if n.is_multiple_of(2) {
        Command::Add(AddResource {
            resource_id: id,
            amount: 1,
            reason: String::new(),
        })
    } else {
        Command::Allocate(AllocateResource {
            resource_id: id,
            amount: 1,
            reason: String::new(),
        })
    };
    CommandRequest {
        command_id: CommandId::new(),
        principal: Principal::player("alice"),
        command,
    }
}

/// Reads updates of `id` until version `head`, checking each follows the previous one (no gap,
/// no repeat, in order). Returns how many arrived.
async fn follow(c: &mut Client, id: ResourceId, sub: u64, mut last: u64, head: u64) -> u64 {
    let mut count = 0;
    while last < head {
        let update = tokio::time::timeout(PATIENCE, c.next_update())
            .await
            .unwrap_or_else(|_| panic!("no update after v{last} (waiting for v{head})"))
            .expect("connection open");
        let ServerMessage::Update {
            sub: got_sub,
            resource_id,
            base_version,
            version,
            resource,
        } = update
        else {
            unreachable!()
        };
        assert_eq!((got_sub, resource_id), (sub, id));
        assert_eq!(base_version, last, "no gap, no repeat");
        assert_eq!(version, last + 1, "one update per command");
        assert_eq!(resource.version, version);
        last = version;
        count += 1;
    }
    count
}

fn sub_of(reply: &ServerMessage) -> u64 {
    match reply {
        ServerMessage::Subscribed { sub, resources, .. } => {
            assert!(resources.is_empty(), "a resume sends no current view");
            *sub
        }
        other => panic!("expected subscribed, got {other:?}"),
    }
}

// Guards against: a resume far behind (more than the outbound queue) being cut off with 4008
// before it delivers anything, or delivering the backlog with holes, repeats or out of order
// while the resource keeps changing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resume_100_000_versions_behind_gets_every_version_once_then_live_ones() {
    let server = LocalServer::start_with(NetConfig {
        commands_per_second: 0,
        ..NetConfig::default()
    })
    .await;
    let mut alice = server.connect("alice", Role::Player).await;
    let id = alice.create_id("gold").await;
    write_through_core(&server.node, id, 100_000).await;
    assert_eq!(server.store().head(id).await.unwrap(), 100_001);

    // Given a writer that keeps changing the resource the whole time,
    let stop = Arc::new(AtomicBool::new(false));
    let written = Arc::new(AtomicU64::new(0));
    let writer = tokio::spawn({
        let (node, stop, written) = (server.node.clone(), stop.clone(), written.clone());
        async move {
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                node.registry()
                    .execute(change(id, n))
                    .await
                    .expect("committed");
                n += 1;
                written.store(n, Ordering::Relaxed);
                tokio::time::sleep(std::time::Duration::from_millis(1)).await;
            }
        }
    });

    // when a client resumes from version 1 (100,000 behind),
    let mut reader = server.connect("alice", Role::Player).await;
    let sub = sub_of(&reader.subscribe(id, Some(1)).await);
    // then it gets every version once and in order up to where the log was,
    let mut got = follow(&mut reader, id, sub, 1, 100_001).await;
    // and on past the versions written while it was catching up.
    let during = written.load(Ordering::Relaxed);
    assert!(during > 0, "the resource changed during the catch-up");
    got += follow(&mut reader, id, sub, 100_001, 100_001 + during).await;
    stop.store(true, Ordering::Relaxed);
    writer.await.unwrap();
    let head = server.store().head(id).await.unwrap();
    got += follow(&mut reader, id, sub, 100_001 + during, head).await;
    assert_eq!(got, head - 1);

    // Then live updates continue the same sequence.
    assert_eq!(applied(&alice.add(id, 5).await).version, head + 1);
    follow(&mut reader, id, sub, head, head + 1).await;
    assert_eq!(NetStats::get(&server.stats.slow_consumers), 0);
    server.stop().await;
}

// Guards against: the documented recovery from 4008 (resubscribe with from_version) looping for
// ever because the backlog a slow consumer resumes with is itself larger than its queue.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_consumer_closed_with_4008_resumes_and_catches_up() {
    use tokio_tungstenite::tungstenite::Message;
    let server = LocalServer::start_with(NetConfig {
        outbound_queue: 16,
        commands_per_second: 0,
        ..NetConfig::default()
    })
    .await;
    let mut alice = server.connect("alice", Role::Player).await;
    let id = alice.create_id("gold").await;

    // A client with a tiny receive buffer subscribes, then stops reading.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let stream = socket.connect(server.addr).await.unwrap();
    let url = server.url(&server.token("alice", Role::Player));
    let (mut slow, _) =
        tokio_tungstenite::client_async(url, tokio_tungstenite::MaybeTlsStream::Plain(stream))
            .await
            .unwrap();
    use futures::SinkExt;
    let subscribe = warden_protocol::ClientMessage::Subscribe(warden_protocol::Subscribe {
        req: 1,
        resource_id: Some(id),
        owner: None,
        from_version: None,
    });
    slow.send(Message::Binary(warden_protocol::encode(&subscribe).into()))
        .await
        .unwrap();

    // The resource changes until the server gives up on it (4008).
    let mut n = 0;
    while NetStats::get(&server.stats.slow_consumers) == 0 {
        assert!(n < 2_000_000, "the slow consumer was never cut off");
        write_through_core(&server.node, id, 1_000).await;
        n += 1_000;
    }
    // More changes after the close: the resume has a long backlog.
    write_through_core(&server.node, id, 20_000).await;

    // It reads what reached it, up to the close.
    let mut last = 0;
    let mut close = None;
    loop {
        match tokio::time::timeout(PATIENCE, slow.next())
            .await
            .expect("ends")
        {
            Some(Ok(Message::Binary(bytes))) => {
                match warden_protocol::decode::<ServerMessage>(&bytes).unwrap() {
                    ServerMessage::Subscribed { resources, .. } => last = resources[0].version,
                    ServerMessage::Update {
                        base_version,
                        version,
                        ..
                    } => {
                        assert_eq!(base_version, last);
                        last = version;
                    }
                    _ => {}
                }
            }
            Some(Ok(Message::Close(frame))) => {
                close = frame;
                break;
            }
            Some(Ok(_)) => continue,
            None | Some(Err(_)) => break,
        }
    }
    if let Some(frame) = close {
        assert_eq!(u16::from(frame.code), 4008);
    }
    let head = server.store().head(id).await.unwrap();
    assert!(head - last > 20_000, "a backlog far larger than the queue");

    // When it resumes from the last version it got, it catches up and stays live.
    let mut resumed = server.connect("alice", Role::Player).await;
    let sub = sub_of(&resumed.subscribe(id, Some(last)).await);
    assert_eq!(follow(&mut resumed, id, sub, last, head).await, head - last);
    assert_eq!(applied(&alice.add(id, 1).await).version, head + 1);
    follow(&mut resumed, id, sub, head, head + 1).await;
    assert_eq!(NetStats::get(&server.stats.slow_consumers), 1);
    server.stop().await;
}
