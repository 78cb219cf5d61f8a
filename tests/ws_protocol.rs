//! The protocol over a real socket: the seed scenario, who may do what, and bad input.

use warden_testkit as support;

use futures::SinkExt;
use rmpv::Value;
use support::{Client, LocalServer, applied, error_code};
use tokio_tungstenite::tungstenite::{self, Message};
use warden_core::domain::{CommandId, PlayerId, ResourceId, ResourceParams, Role};
use warden_net::NetConfig;
use warden_protocol::ErrorCode;
use warden_protocol::seed::{Expect, SEED_PLAYER, SEED_STEPS};
use warden_protocol::{ClientMessage, ServerMessage};

// Guards against: the seed scenario working in-process but not through the real protocol.
#[tokio::test]
async fn the_seed_scenario_runs_over_the_wire() {
    let server = LocalServer::start().await;
    let mut c = server.connect(SEED_PLAYER, Role::Player).await;

    // Every step of the seed, as its wire message; each reply is checked against the seed.
    let mut replies = Vec::new();
    let mut id = ResourceId::default(); // the first step creates the resource
    for (i, step) in SEED_STEPS.iter().enumerate() {
        let reply = c
            .request(|req| step.message(req, CommandId::new(), id))
            .await;
        match step.expect {
            Expect::Applied { amount, locked } => {
                let view = applied(&reply);
                assert_eq!(
                    (view.amount, view.locked),
                    (amount, locked),
                    "step {}",
                    i + 1
                );
            }
            Expect::Refused(code) => {
                assert_eq!(error_code(&reply), code, "step {}", i + 1)
            }
        }
        if i == 0 {
            id = applied(&reply).id;
        }
        replies.push(reply);
    }
    let [created, allocated, added, locked, refused, unlocked, last] = &replies[..] else {
        panic!("seven steps, got {}", replies.len())
    };
    match created {
        ServerMessage::Applied {
            resource_id,
            resource,
            version,
            duplicate,
            ..
        } => {
            assert_eq!(
                (resource.amount, resource.max_amount, *version),
                (1000, 5000, 1)
            );
            assert!(!duplicate);
            assert_eq!(*resource_id, id);
        }
        other => panic!("create: {other:?}"),
    }
    assert_eq!(applied(allocated).amount, 800);
    assert_eq!(applied(added).amount, 1300);
    assert!(applied(locked).locked);
    assert_eq!(applied(locked).lock_reason.as_deref(), Some("Maintenance"));
    // Step 5: refused because of the lock, and nothing changes.
    assert_eq!(error_code(refused), ErrorCode::Locked);
    assert!(!applied(unlocked).locked);
    assert_eq!((applied(last).amount, applied(last).version), (1200, 6));

    // The read models: the list (current at once: each view is written with its commit, before
    // the reply), one resource, and its audit trail.
    let list = match c.list(Some(SEED_PLAYER)).await {
        ServerMessage::Resources { resources, .. } => resources,
        other => panic!("list failed: {other:?}"),
    };
    assert_eq!(list.len(), 1);
    assert_eq!(
        (list[0].amount, list[0].version, list[0].locked),
        (1200, 6, false)
    );
    match c.get(id).await {
        ServerMessage::Resource { resource, .. } => assert_eq!(resource.amount, 1200),
        other => panic!("get: {other:?}"),
    }
    match c.history(id).await {
        ServerMessage::History { events, .. } => {
            let kinds: Vec<&str> = events.iter().map(|e| e.event_type.as_str()).collect();
            assert_eq!(
                kinds,
                [
                    "ResourceCreated",
                    "ResourceAllocated",
                    "ResourceAdded",
                    "ResourceLocked",
                    "ResourceUnlocked",
                    "ResourceAllocated"
                ]
            );
            assert_eq!(events[1].amount, Some(200));
            assert_eq!(events[1].balance, Some(800));
        }
        other => panic!("history: {other:?}"),
    }
    server.stop().await;
}

// Guards against: retries after a lost reply applying a command twice.
#[tokio::test]
async fn a_repeated_command_id_returns_the_first_outcome() {
    let server = LocalServer::start().await;
    let mut c = server.connect("alice", Role::Player).await;
    let id = c.create_id("gold").await;
    let command_id = CommandId::new();
    let send = |req| {
        ClientMessage::Allocate(warden_protocol::Allocate {
            req,
            command_id,
            resource_id: id,
            amount: 10,
            reason: String::new(),
        })
    };
    let first = c.request(send).await;
    let again = c.request(send).await;
    assert_eq!(applied(&first).amount, 990);
    assert_eq!(applied(&again).amount, 990);
    assert!(matches!(
        again,
        ServerMessage::Applied {
            duplicate: true,
            version: 2,
            ..
        }
    ));
    server.stop().await;
}

fn refused_status(result: Result<Client, tungstenite::Error>) -> u16 {
    match result {
        Err(tungstenite::Error::Http(response)) => response.status().as_u16(),
        Err(e) => panic!("expected an HTTP refusal, got {e}"),
        Ok(_) => panic!("the upgrade was accepted"),
    }
}

// Guards against: anonymous, forged or expired identities getting a session.
#[tokio::test]
async fn missing_forged_and_expired_tokens_are_refused_with_401() {
    let server = LocalServer::start().await;
    let base = format!("ws://{}/v1", server.addr);
    assert_eq!(refused_status(Client::connect(&base).await), 401);
    assert_eq!(
        refused_status(Client::connect(&format!("{base}?token=")).await),
        401
    );
    let forged = warden_net::auth::TokenKeys::from_secret(b"not-the-secret").mint(
        "alice",
        Role::Service,
        60,
    );
    assert_eq!(
        refused_status(Client::connect(&server.url(&forged)).await),
        401
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let claims = warden_protocol::token::Claims {
        sub: "alice".into(),
        role: Role::Player,
        exp: now - 60,
        iat: now - 120,
    };
    let expired = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(b"test-secret"),
    )
    .unwrap();
    assert_eq!(
        refused_status(Client::connect(&server.url(&expired)).await),
        401
    );
    assert_eq!(
        refused_status(
            Client::connect(&format!(
                "ws://{}/elsewhere?token={}",
                server.addr,
                server.token("a", Role::Player)
            ))
            .await
        ),
        404
    );

    // The same token in an Authorization header works (for clients that can set headers).
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut request = base.as_str().into_client_request().unwrap();
    let bearer = format!("Bearer {}", server.token("alice", Role::Player));
    request
        .headers_mut()
        .insert("authorization", bearer.parse().unwrap());
    let (ws, _) = tokio_tungstenite::connect_async(request)
        .await
        .expect("bearer accepted");
    drop(ws);
    assert_eq!(warden_net::NetStats::get(&server.stats.refused), 5);
    server.stop().await;
}

// Guards against: players acting on or reading the details of others' resources, and spectators
// writing.
#[tokio::test]
async fn the_authorization_matrix_holds() {
    let server = LocalServer::start().await;
    let mut alice = server.connect("alice", Role::Player).await;
    let mut bob = server.connect("bob", Role::Player).await;
    let mut watcher = server.connect("eve", Role::Spectator).await;
    let mut service = server.connect("shop", Role::Service).await;
    let id = alice.create_id("gold").await;
    alice.lock(id, "secret plan", 60_000).await;

    // Own resource: owner view, full history.
    match alice.get(id).await {
        ServerMessage::Resource { resource, .. } => {
            assert_eq!(resource.lock_reason.as_deref(), Some("secret plan"));
            assert!(resource.regen_milli.is_some());
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        alice.history(id).await,
        ServerMessage::History { .. }
    ));

    // Another player: no commands, spectator view, no history.
    assert_eq!(error_code(&bob.add(id, 1).await), ErrorCode::Forbidden);
    assert_eq!(error_code(&bob.unlock(id).await), ErrorCode::Forbidden);
    for reply in [bob.get(id).await, watcher.get(id).await] {
        match reply {
            ServerMessage::Resource { resource, .. } => {
                assert!(resource.locked);
                assert_eq!(resource.lock_reason, None);
                assert_eq!(resource.regen_milli, None);
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(error_code(&bob.history(id).await), ErrorCode::Forbidden);
    assert_eq!(error_code(&watcher.history(id).await), ErrorCode::Forbidden);
    match bob.list(Some("alice")).await {
        ServerMessage::Resources { resources, .. } => {
            assert!(resources.iter().all(|r| r.lock_reason.is_none()))
        }
        other => panic!("{other:?}"),
    }

    // A spectator sends no command at all.
    assert_eq!(
        error_code(&watcher.create("gold").await),
        ErrorCode::Forbidden
    );
    assert_eq!(
        error_code(&watcher.allocate(id, 1).await),
        ErrorCode::Forbidden
    );

    // A player may not create for someone else or choose parameters.
    let for_bob = alice
        .request(|req| {
            ClientMessage::Create(warden_protocol::Create {
                name: None,
                req,
                command_id: CommandId::new(),
                resource_type: "gold".into(),
                owner: Some(PlayerId::new("bob")),
                params: None,
            })
        })
        .await;
    assert_eq!(error_code(&for_bob), ErrorCode::Forbidden);
    let rich = alice
        .request(|req| {
            ClientMessage::Create(warden_protocol::Create {
                name: None,
                req,
                command_id: CommandId::new(),
                resource_type: "gold".into(),
                owner: None,
                params: Some(ResourceParams {
                    initial_amount: 5000,
                    max_amount: 5000,
                    regen_milli: 0,
                }),
            })
        })
        .await;
    assert_eq!(error_code(&rich), ErrorCode::Forbidden);

    // A service may do all of it.
    assert!(matches!(
        service.unlock(id).await,
        ServerMessage::Applied { .. }
    ));
    assert_eq!(applied(&service.add(id, 5).await).amount, 1005);
    assert!(matches!(
        service.history(id).await,
        ServerMessage::History { .. }
    ));
    let gift = service
        .request(|req| {
            ClientMessage::Create(warden_protocol::Create {
                name: None,
                req,
                command_id: CommandId::new(),
                resource_type: "gems".into(),
                owner: Some(PlayerId::new("bob")),
                params: Some(ResourceParams {
                    initial_amount: 3,
                    max_amount: 10,
                    regen_milli: 0,
                }),
            })
        })
        .await;
    assert_eq!(applied(&gift).owner, PlayerId::new("bob"));
    server.stop().await;
}

fn map(fields: Vec<(&str, Value)>) -> Vec<u8> {
    let value = Value::Map(
        fields
            .into_iter()
            .map(|(k, v)| (Value::from(k), v))
            .collect(),
    );
    let mut bytes = Vec::new();
    rmpv::encode::write_value(&mut bytes, &value).unwrap();
    bytes
}

// Guards against: bad input panicking the server, changing a resource, going unanswered, or
// disturbing anyone else.
#[tokio::test]
async fn bad_input_gets_a_clear_error_and_changes_nothing() {
    let config = NetConfig {
        max_subscriptions: 2,
        ..NetConfig::default()
    };
    let server = LocalServer::start_with(config).await;
    let mut alice = server.connect("alice", Role::Player).await;
    let mut bystander = server.connect("bob", Role::Player).await;
    let id = alice.create_id("gold").await;
    let bobs = bystander.create_id("wood").await;
    let rid = Value::from(id.to_string());
    let cid = || Value::from(CommandId::new().to_string());
    let allocate = |amount: Value| {
        map(vec![
            ("type", "allocate".into()),
            ("req", 9.into()),
            ("command_id", cid()),
            ("resource_id", rid.clone()),
            ("amount", amount),
        ])
    };
    let cases: Vec<(&str, Vec<u8>, Option<u64>, ErrorCode)> = vec![
        (
            "not MessagePack",
            vec![0xc1, 0xff, 0x00],
            None,
            ErrorCode::BadMessage,
        ),
        ("not a map", vec![0x05], None, ErrorCode::BadMessage),
        (
            "no type",
            map(vec![("req", 3.into())]),
            Some(3),
            ErrorCode::BadMessage,
        ),
        (
            "unknown kind",
            map(vec![("type", "explode".into()), ("req", 4.into())]),
            Some(4),
            ErrorCode::UnknownType,
        ),
        (
            "req not an integer",
            map(vec![("type", "ping".into()), ("req", "x".into())]),
            None,
            ErrorCode::BadMessage,
        ),
        (
            "amount is a string",
            allocate("lots".into()),
            Some(9),
            ErrorCode::BadMessage,
        ),
        (
            "amount is negative",
            allocate((-5).into()),
            Some(9),
            ErrorCode::BadMessage,
        ),
        (
            "amount is a float",
            allocate(1.5.into()),
            Some(9),
            ErrorCode::BadMessage,
        ),
        (
            "amount is zero",
            allocate(0.into()),
            Some(9),
            ErrorCode::InvalidAmount,
        ),
        (
            "more than there is",
            allocate(u64::MAX.into()),
            Some(9),
            ErrorCode::Insufficient,
        ),
        (
            "missing amount",
            map(vec![
                ("type", "allocate".into()),
                ("req", 10.into()),
                ("command_id", cid()),
                ("resource_id", rid.clone()),
            ]),
            Some(10),
            ErrorCode::BadMessage,
        ),
        (
            "unknown field",
            map(vec![
                ("type", "get".into()),
                ("req", 11.into()),
                ("resource_id", rid.clone()),
                ("evil", true.into()),
            ]),
            Some(11),
            ErrorCode::BadMessage,
        ),
        (
            "id not a UUID",
            map(vec![
                ("type", "get".into()),
                ("req", 12.into()),
                ("resource_id", "123".into()),
            ]),
            Some(12),
            ErrorCode::BadMessage,
        ),
        (
            "overflowing add",
            map(vec![
                ("type", "add".into()),
                ("req", 13.into()),
                ("command_id", cid()),
                ("resource_id", rid.clone()),
                ("amount", u64::MAX.into()),
            ]),
            Some(13),
            ErrorCode::Overflow,
        ),
        (
            "unknown resource",
            map(vec![
                ("type", "add".into()),
                ("req", 14.into()),
                ("command_id", cid()),
                ("resource_id", ResourceId::new().to_string().into()),
                ("amount", 1.into()),
            ]),
            Some(14),
            ErrorCode::NotFound,
        ),
        (
            "another player's resource",
            map(vec![
                ("type", "add".into()),
                ("req", 15.into()),
                ("command_id", cid()),
                ("resource_id", bobs.to_string().into()),
                ("amount", 1.into()),
            ]),
            Some(15),
            ErrorCode::Forbidden,
        ),
        (
            "unknown subscription",
            map(vec![
                ("type", "unsubscribe".into()),
                ("req", 16.into()),
                ("sub", 99.into()),
            ]),
            Some(16),
            ErrorCode::UnknownSubscription,
        ),
        (
            "resume ahead of the log",
            map(vec![
                ("type", "subscribe".into()),
                ("req", 17.into()),
                ("resource_id", rid.clone()),
                ("from_version", 50.into()),
            ]),
            Some(17),
            ErrorCode::InvalidFromVersion,
        ),
        (
            "subscribe to nothing",
            map(vec![("type", "subscribe".into()), ("req", 18.into())]),
            Some(18),
            ErrorCode::BadMessage,
        ),
        (
            // Twenty times the 2 KiB read buffer, within max_frame_bytes: read whole, judged.
            "a 40 KiB reason",
            map(vec![
                ("type", "allocate".into()),
                ("req", 19.into()),
                ("command_id", cid()),
                ("resource_id", rid.clone()),
                ("amount", 1.into()),
                ("reason", "x".repeat(40 * 1024).into()),
            ]),
            Some(19),
            ErrorCode::ReasonTooLong,
        ),
    ];
    for (what, bytes, req, code) in cases {
        let (got_req, got_code) = alice.refusal(bytes).await;
        assert_eq!((got_req, got_code), (req, code), "{what}");
        // Someone else keeps being served meanwhile.
        assert!(
            matches!(bystander.get(bobs).await, ServerMessage::Resource { .. }),
            "{what}"
        );
    }

    // A spectator's command.
    let mut watcher = server.connect("eve", Role::Spectator).await;
    assert_eq!(error_code(&watcher.add(id, 1).await), ErrorCode::Forbidden);

    // Too many subscriptions.
    assert!(matches!(
        alice.subscribe(id, None).await,
        ServerMessage::Subscribed { .. }
    ));
    assert!(matches!(
        alice.subscribe(bobs, None).await,
        ServerMessage::Subscribed { .. }
    ));
    assert_eq!(
        error_code(&alice.subscribe(id, None).await),
        ErrorCode::TooManySubscriptions
    );

    // Nothing changed: still the created resource at version 1.
    match bystander.get(id).await {
        ServerMessage::Resource { resource, .. } => {
            assert_eq!((resource.version, resource.amount), (1, 1000))
        }
        other => panic!("{other:?}"),
    }
    // And the session that sent all of it is still open.
    assert!(matches!(
        alice
            .request(|req| ClientMessage::Ping(warden_protocol::Ping { req }))
            .await,
        ServerMessage::Pong { .. }
    ));
    server.stop().await;
}

// Guards against: a client flooding commands without limit; the session must survive it.
#[tokio::test]
async fn commands_over_the_rate_are_refused_and_the_session_stays_open() {
    let config = NetConfig {
        commands_per_second: 1,
        commands_burst: 3,
        ..NetConfig::default()
    };
    let server = LocalServer::start_with(config).await;
    let mut c = server.connect("alice", Role::Player).await;
    let id = c.create_id("gold").await;
    assert!(matches!(c.add(id, 1).await, ServerMessage::Applied { .. }));
    assert!(matches!(c.add(id, 1).await, ServerMessage::Applied { .. }));
    assert_eq!(error_code(&c.add(id, 1).await), ErrorCode::RateLimited);
    // Queries are not commands; the session is open.
    assert!(matches!(c.get(id).await, ServerMessage::Resource { .. }));
    server.stop().await;
}

/// Sends a frame and returns the close code the session ends with.
async fn closed_with(server: &LocalServer, frame: Message) -> Option<u16> {
    let mut c = server.connect("mallory", Role::Player).await;
    let _ = c.ws.send(frame).await;
    c.closed().await.map(|f| u16::from(f.code))
}

// Guards against: protocol abuse taking down more than the abusing session.
#[tokio::test]
async fn protocol_abuse_closes_only_that_session() {
    let server = LocalServer::start().await;
    let mut bystander = server.connect("bob", Role::Player).await;
    let id = bystander.create_id("wood").await;

    assert_eq!(
        closed_with(&server, Message::text("{\"type\":\"ping\"}")).await,
        Some(1003)
    );
    let huge = vec![0x90u8; 64 * 1024 + 1];
    assert_eq!(
        closed_with(&server, Message::Binary(huge.into())).await,
        Some(1009)
    );

    let mut flooder = server.connect("mallory", Role::Player).await;
    for _ in 0..100 {
        if flooder
            .ws
            .send(Message::Binary(vec![0xc1].into()))
            .await
            .is_err()
        {
            break;
        }
    }
    assert_eq!(
        flooder.closed().await.map(|f| u16::from(f.code)),
        Some(1008)
    );

    assert!(matches!(
        bystander.add(id, 1).await,
        ServerMessage::Applied { .. }
    ));
    assert_eq!(warden_net::NetStats::get(&server.stats.abuse_closes), 3);
    server.stop().await;
}

/// The request and reply of the worked example in docs/protocol.md, with fixed ids and times.
fn worked_example() -> (ClientMessage, ServerMessage) {
    let resource_id = ResourceId("0193a5c0-0000-7000-8000-000000000001".parse().unwrap());
    let command_id = CommandId("0193a5c0-0000-7000-8000-0000000000aa".parse().unwrap());
    let request = ClientMessage::Allocate(warden_protocol::Allocate {
        req: 7,
        command_id,
        resource_id,
        amount: 200,
        reason: "Purchase item".into(),
    });
    let reply = ServerMessage::Applied {
        existing: false,
        req: 7,
        command_id,
        resource_id,
        version: 2,
        resource: warden_core::domain::ClientResource {
            name: None,
            regen_carry: None,
            id: resource_id,
            owner: PlayerId::new("player123"),
            resource_type: "gold".into(),
            amount: 800,
            amount_at: warden_core::domain::Timestamp(1_767_225_600_000),
            max_amount: 5000,
            regen_milli: Some(500),
            locked: false,
            lock_reason: None,
            lock_expires_at: None,
            version: 2,
            updated_at: warden_core::domain::Timestamp(1_767_225_600_000),
        },
        duplicate: false,
    };
    (request, reply)
}

fn hex_dump(bytes: &[u8]) -> String {
    bytes
        .chunks(16)
        .map(|line| {
            line.iter()
                .map(|b| format!("{b:02x}"))
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

// Guards against: the protocol page's worked example drifting from what the server really sends.
#[test]
fn worked_example_in_the_protocol_doc_matches_the_encoder() {
    let (request, reply) = worked_example();
    let request_hex = hex_dump(&warden_protocol::encode(&request));
    let reply_hex = hex_dump(&warden_protocol::encode(&reply));
    println!("request:\n{request_hex}\n\nreply:\n{reply_hex}");
    let doc = include_str!("../docs/protocol.md");
    assert!(
        doc.contains(&request_hex),
        "docs/protocol.md shows the request bytes"
    );
    assert!(
        doc.contains(&reply_hex),
        "docs/protocol.md shows the reply bytes"
    );
    // And the server decodes the request bytes as shown.
    assert_eq!(
        warden_protocol::decode::<ClientMessage>(&warden_protocol::encode(&request)).unwrap(),
        request
    );
}

// Guards against: dead connections (no pong, nothing sent) holding a session forever.
#[tokio::test]
async fn a_silent_session_is_closed_after_the_idle_timeout() {
    let config = NetConfig {
        idle_timeout: std::time::Duration::from_millis(200),
        ping_interval: std::time::Duration::from_secs(3600),
        ..NetConfig::default()
    };
    let server = LocalServer::start_with(config).await;
    let mut silent = server.connect("alice", Role::Player).await;
    assert_eq!(silent.closed().await.map(|f| u16::from(f.code)), Some(4001));
    server.stop().await;
}
