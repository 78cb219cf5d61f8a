//! Graceful shutdown: in-flight commands finish and are answered, sessions get a close frame, and
//! every acknowledged command is durable after a restart on the same data directory.

use warden_testkit as support;

use std::collections::HashSet;
use support::{DataDir, LocalServer};
use warden_core::domain::{CommandId, Role};
use warden_net::NetConfig;
use warden_protocol::ErrorCode;
use warden_protocol::{ClientMessage, ServerMessage};

// Guards against: a shutdown that drops acknowledged commands or leaves clients without a reason.
#[tokio::test]
async fn every_acknowledged_command_survives_a_graceful_shutdown_and_restart() {
    let dir = DataDir::temp();
    let config = NetConfig {
        commands_per_second: 0,
        ..NetConfig::default()
    };
    let server = LocalServer::start_in(&dir, config.clone()).await;
    let mut c = server.connect("alice", Role::Player).await;
    let id = c.create_id("wood").await;

    // Pipeline many commands, and shut down while they are in flight.
    let mut sent = Vec::new();
    for _ in 0..300 {
        let req = c.next_req();
        let command_id = CommandId::new();
        c.send(&ClientMessage::Add(warden_protocol::Add {
            req,
            command_id,
            resource_id: id,
            amount: 1,
            reason: String::new(),
        }))
        .await;
        sent.push(command_id);
    }
    let first = c.recv().await.expect("a first reply");
    let stopping = tokio::spawn(server.stop_with_clients());

    let mut acked = HashSet::new();
    let mut record = |msg: ServerMessage| match msg {
        ServerMessage::Applied { command_id, .. } => {
            acked.insert(command_id);
        }
        ServerMessage::Error { code, .. } => assert_eq!(code, ErrorCode::ShuttingDown),
        other => panic!("unexpected {other:?}"),
    };
    record(first);
    let close = loop {
        use futures::StreamExt;
        match tokio::time::timeout(support::PATIENCE, c.ws.next())
            .await
            .expect("closed in time")
        {
            Some(Ok(tokio_tungstenite::tungstenite::Message::Binary(b))) => {
                record(warden_protocol::decode(&b).unwrap())
            }
            Some(Ok(tokio_tungstenite::tungstenite::Message::Close(frame))) => break frame,
            Some(Ok(_)) => continue,
            other => panic!("connection ended without a close frame: {other:?}"),
        }
    };
    assert_eq!(close.map(|f| u16::from(f.code)), Some(1001));
    stopping.await.unwrap();
    assert!(!acked.is_empty());

    // Restart on the same data: every acknowledged command is in the log.
    let server = LocalServer::start_in(&dir, config).await;
    let mut c = server.connect("alice", Role::Player).await;
    let mut logged = HashSet::new();
    let mut after = 0;
    loop {
        let reply = c
            .request(|req| {
                ClientMessage::History(warden_protocol::History {
                    req,
                    resource_id: id,
                    after_version: after,
                    limit: None,
                })
            })
            .await;
        let ServerMessage::History { events, .. } = reply else {
            panic!("{reply:?}")
        };
        let Some(last) = events.last() else { break };
        after = last.version;
        logged.extend(events.iter().map(|e| e.command_id));
    }
    for command_id in &acked {
        assert!(
            logged.contains(command_id),
            "acknowledged {command_id} is durable"
        );
    }
    // And nothing was applied that was never sent.
    assert!(logged.iter().filter(|c| sent.contains(c)).count() >= acked.len());
    match c.get(id).await {
        ServerMessage::Resource { resource, .. } => assert!(resource.amount >= acked.len() as u64),
        other => panic!("{other:?}"),
    }
    server.stop().await;
}
