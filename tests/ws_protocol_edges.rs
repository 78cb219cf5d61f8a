//! The protocol's edges a third-party client author met: `req` kept whenever it can be read, map
//! keys that are strings only, one UUID form, resends versus reused command ids, and the `sub`
//! of every update.

use warden_testkit as support;

use rmpv::Value;
use support::{LocalServer, applied, error_code};
use warden_core::domain::{CommandId, Role};
use warden_protocol::ErrorCode;
use warden_protocol::{ClientMessage, ServerMessage};

fn encode(value: &Value) -> Vec<u8> {
    let mut bytes = Vec::new();
    rmpv::encode::write_value(&mut bytes, value).unwrap();
    bytes
}

fn map(fields: Vec<(&str, Value)>) -> Vec<u8> {
    encode(&Value::Map(
        fields
            .into_iter()
            .map(|(k, v)| (Value::from(k), v))
            .collect(),
    ))
}

// Guards against: a client waiting for ever on a request whose `req` the server could read but
// left out of the error, and integer map keys being taken for field positions.
#[tokio::test]
async fn req_is_kept_whenever_it_can_be_read_and_keys_must_be_strings() {
    let server = LocalServer::start().await;
    let mut alice = server.connect("alice", Role::Player).await;
    let cases: Vec<(&str, Vec<u8>, Option<u64>)> = vec![
        (
            "type is a number",
            map(vec![("type", 5.into()), ("req", 6.into())]),
            Some(6),
        ),
        (
            "type is nil, req first",
            map(vec![("req", 7.into()), ("type", Value::Nil)]),
            Some(7),
        ),
        (
            "an integer key beside type and req",
            encode(&Value::Map(vec![
                (Value::from("type"), Value::from("ping")),
                (Value::from("req"), Value::from(8)),
                (Value::from(1), Value::from(9)),
            ])),
            Some(8),
        ),
        (
            "integer keys only",
            encode(&Value::Map(vec![
                (Value::from(0), Value::from("ping")),
                (Value::from(1), Value::from(10)),
            ])),
            None,
        ),
        (
            "an integer key inside params",
            map(vec![
                ("type", "create".into()),
                ("req", 11.into()),
                ("command_id", CommandId::new().to_string().into()),
                ("resource_type", "gold".into()),
                ("params", Value::Map(vec![(Value::from(0), Value::from(1))])),
            ]),
            Some(11),
        ),
        (
            "an array, not a map",
            encode(&Value::Array(vec!["ping".into(), 12.into()])),
            None,
        ),
        (
            "two maps in one frame",
            [
                map(vec![("type", "ping".into()), ("req", 13.into())]),
                map(vec![("type", "ping".into()), ("req", 14.into())]),
            ]
            .concat(),
            Some(13),
        ),
    ];
    for (what, bytes, req) in cases {
        assert_eq!(
            alice.refusal(bytes).await,
            (req, ErrorCode::BadMessage),
            "{what}"
        );
    }
    // The session is still open and well.
    assert!(matches!(
        alice
            .request(|req| ClientMessage::Ping(warden_protocol::Ping { req }))
            .await,
        ServerMessage::Pong { .. }
    ));
    server.stop().await;
}

// Guards against: ids accepted in several spellings (one resource, many strings in logs and
// client caches), which the doc forbids.
#[tokio::test]
async fn only_the_canonical_uuid_form_is_accepted() {
    let server = LocalServer::start().await;
    let mut alice = server.connect("alice", Role::Player).await;
    let id = alice.create_id("gold").await;
    let canonical = id.to_string();
    let forms: Vec<(&str, Value)> = vec![
        ("upper case", canonical.to_uppercase().into()),
        ("no hyphens", canonical.replace('-', "").into()),
        ("braced", format!("{{{canonical}}}").into()),
        ("urn", format!("urn:uuid:{canonical}").into()),
        ("16-byte binary", Value::Binary(id.0.as_bytes().to_vec())),
        (
            "canonical text as binary",
            Value::Binary(canonical.as_bytes().to_vec()),
        ),
    ];
    for (n, (what, form)) in forms.into_iter().enumerate() {
        let req = 100 + n as u64 * 10;
        let as_resource = |kind: &str, req: u64| {
            let mut fields = vec![
                ("type", Value::from(kind)),
                ("req", req.into()),
                ("resource_id", form.clone()),
            ];
            if kind == "add" {
                fields.push(("command_id", CommandId::new().to_string().into()));
                fields.push(("amount", 1.into()));
            }
            map(fields)
        };
        for (i, bytes) in [
            as_resource("get", req),
            as_resource("subscribe", req + 1),
            as_resource("add", req + 2),
            map(vec![
                ("type", "add".into()),
                ("req", (req + 3).into()),
                ("command_id", form.clone()),
                ("resource_id", canonical.clone().into()),
                ("amount", 1.into()),
            ]),
        ]
        .into_iter()
        .enumerate()
        {
            assert_eq!(
                alice.refusal(bytes).await,
                (Some(req + i as u64), ErrorCode::BadMessage),
                "{what} #{i}"
            );
        }
    }
    // Nothing was applied.
    match alice.get(id).await {
        ServerMessage::Resource { resource, .. } => assert_eq!(resource.version, 1),
        other => panic!("{other:?}"),
    }
    server.stop().await;
}

// Guards against: a command id reused for another amount silently returning the first outcome,
// and copies of one command sent together getting `conflict` instead of that outcome.
#[tokio::test]
async fn resends_get_the_first_outcome_and_a_reused_id_is_refused() {
    let server = LocalServer::start().await;
    let mut alice = server.connect("alice", Role::Player).await;
    let id = alice.create_id("gold").await;
    let cid = CommandId::new();
    let allocate = |req, amount| {
        ClientMessage::Allocate(warden_protocol::Allocate {
            req,
            command_id: cid,
            resource_id: id,
            amount,
            reason: "potion".into(),
        })
    };
    // 20 copies at once.
    let mut reqs = Vec::new();
    for _ in 0..20 {
        let req = alice.next_req();
        alice.send(&allocate(req, 10)).await;
        reqs.push(req);
    }
    let mut duplicates = 0;
    for req in reqs {
        match alice.reply_to(req).await {
            ServerMessage::Applied {
                duplicate, version, ..
            } => {
                assert_eq!(version, 2);
                duplicates += u32::from(duplicate);
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(duplicates, 19);
    // The same id with another amount.
    let req = alice.next_req();
    alice.send(&allocate(req, 11)).await;
    assert_eq!(
        error_code(&alice.reply_to(req).await),
        ErrorCode::CommandIdReused
    );
    match alice.get(id).await {
        ServerMessage::Resource { resource, .. } => {
            assert_eq!((resource.version, resource.amount), (2, 990))
        }
        other => panic!("{other:?}"),
    }
    server.stop().await;
}

// Guards against: two overlapping subscriptions of one session being impossible to tell apart.
#[tokio::test]
async fn every_update_names_its_subscription() {
    let server = LocalServer::start().await;
    let mut alice = server.connect("alice", Role::Player).await;
    let id = alice.create_id("gold").await;
    // The read model lists it before the owner subscription starts.
    while !matches!(alice.list(None).await, ServerMessage::Resources { ref resources, .. } if resources.len() == 1)
    {
    }
    let mut watcher = server.connect("alice", Role::Player).await;
    let by_id = match watcher.subscribe(id, None).await {
        ServerMessage::Subscribed { sub, .. } => sub,
        other => panic!("{other:?}"),
    };
    let by_owner = match watcher.subscribe_owner("alice").await {
        ServerMessage::Subscribed { sub, .. } => sub,
        other => panic!("{other:?}"),
    };
    assert_ne!(by_id, by_owner);
    assert_eq!(applied(&alice.add(id, 1).await).version, 2);
    let mut subs = Vec::new();
    for _ in 0..2 {
        match watcher.next_update().await.unwrap() {
            ServerMessage::Update { sub, version, .. } => {
                assert_eq!(version, 2);
                subs.push(sub);
            }
            _ => unreachable!(),
        }
    }
    subs.sort();
    assert_eq!(subs, [by_id, by_owner]);
    server.stop().await;
}

// Guards against a client's deliberate close being seen as an abnormal one (1006): the server
// must answer a client's close frame with its own, completing the handshake.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_close_from_the_client_is_answered_with_a_close_frame() {
    use futures::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    use tokio_tungstenite::tungstenite::protocol::CloseFrame;
    use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode as WsCloseCode;

    let server = LocalServer::start().await;
    let url = server.url(&server.token("alice", Role::Player));
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    // welcome first
    assert!(matches!(ws.next().await, Some(Ok(Message::Binary(_)))));
    ws.send(Message::Close(Some(CloseFrame {
        code: WsCloseCode::Normal,
        reason: "bye".into(),
    })))
    .await
    .unwrap();
    let answer = tokio::time::timeout(support::PATIENCE, ws.next())
        .await
        .expect("the server answers in time");
    match answer {
        Some(Ok(Message::Close(Some(frame)))) => assert_eq!(frame.code, WsCloseCode::Normal),
        other => panic!("expected the server's close frame, got {other:?}"),
    }
    server.stop().await;
}
