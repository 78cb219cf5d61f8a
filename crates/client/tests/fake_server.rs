//! warden-client against a fake server: a `tokio_tungstenite` accept loop on `127.0.0.1:0`, in the
//! test, speaking just enough of the protocol for each case (welcome, replies by `req`, dropped
//! connections, close frames, subscriptions and their updates). No server crate is involved, so
//! these tests pin the client's own behaviour: what a game sees when the network misbehaves.

use futures::{SinkExt, StreamExt};
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode as WsCloseCode;
use warden_client::protocol::{ClientMessage, ServerMessage, Subscribe};
use warden_client::{
    Client, ClientConfig, ClientError, ClientResource, CloseCode, Command, ErrorCode, Limits,
    PlayerId, ResourceId, RetryPolicy, Role, Timestamp, Update,
};

/// No test step waits longer than this (a guard against a hung test, never reached when green).
const PATIENCE: Duration = Duration::from_secs(10);
const SERVER_TIME: Timestamp = Timestamp(1_767_225_600_000);

/// One accepted connection of the fake server, after its `welcome`.
struct Peer {
    ws: WebSocketStream<TcpStream>,
    /// 0 for the first connection the server accepted, 1 for the next, …
    index: usize,
    /// The `Authorization` header of the upgrade.
    auth: Option<String>,
}

impl Peer {
    /// The next client message; `None` when the client went away.
    async fn recv(&mut self) -> Option<ClientMessage> {
        loop {
            match tokio::time::timeout(PATIENCE, self.ws.next())
                .await
                .ok()??
            {
                Ok(Message::Binary(b)) => {
                    return Some(warden_client::protocol::decode(&b).expect("a client message"));
                }
                Ok(Message::Close(_)) | Err(_) => return None,
                Ok(_) => continue,
            }
        }
    }

    async fn send(&mut self, msg: ServerMessage) {
        let frame = warden_client::protocol::encode(&msg);
        let _ = self.ws.send(Message::Binary(frame.into())).await;
    }

    async fn close_with(&mut self, code: CloseCode, reason: &str) {
        let frame = CloseFrame {
            code: WsCloseCode::from(code.code()),
            reason: reason.into(),
        };
        let _ = self.ws.close(Some(frame)).await;
    }
}

fn limits() -> Limits {
    Limits {
        max_frame_bytes: 65_536,
        commands_per_second: 1000,
        max_subscriptions: 64,
        idle_timeout_ms: 60_000,
        outbound_queue: 1024,
        commands_burst: 2000,
        max_in_flight: 64,
        ping_interval_ms: 20_000,
    }
}

/// Starts a fake server whose every connection is welcomed as player `alice`, then handed to
/// `handler`; returns its base URL.
async fn fake_server<F, Fut>(handler: F) -> String
where
    F: Fn(Peer) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let handler = Arc::new(handler);
    let accepted = Arc::new(AtomicUsize::new(0));
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let handler = handler.clone();
            let index = accepted.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut auth = None;
                // The signature is tungstenite's `Callback` (its error type is an HTTP response).
                #[allow(clippy::result_large_err)]
                let callback = |req: &Request, resp: Response| {
                    auth = req
                        .headers()
                        .get("authorization")
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_owned);
                    Ok(resp)
                };
                let Ok(ws) = tokio_tungstenite::accept_hdr_async(stream, callback).await else {
                    return;
                };
                let mut peer = Peer { ws, index, auth };
                peer.send(ServerMessage::Welcome {
                    protocol: 1,
                    player: PlayerId::new("alice"),
                    role: Role::Player,
                    server_time: SERVER_TIME,
                    limits: limits(),
                })
                .await;
                handler(peer).await;
            });
        }
    });
    format!("ws://{addr}")
}

fn view(id: ResourceId, version: u64, amount: u64) -> ClientResource {
    ClientResource {
        name: None,
        regen_carry: None,
        id,
        owner: PlayerId::new("alice"),
        resource_type: "gold".into(),
        amount,
        amount_at: SERVER_TIME,
        max_amount: 5000,
        regen_milli: Some(500),
        locked: false,
        lock_reason: None,
        lock_expires_at: None,
        version,
        updated_at: SERVER_TIME,
    }
}

/// The `applied` answer to a command message.
fn applied(msg: &ClientMessage, version: u64, duplicate: bool) -> ServerMessage {
    let (command_id, resource_id) = match msg {
        ClientMessage::Allocate(m) => (m.command_id, m.resource_id),
        ClientMessage::Add(m) => (m.command_id, m.resource_id),
        other => panic!("not handled here: {other:?}"),
    };
    ServerMessage::Applied {
        existing: false,
        req: msg.req(),
        command_id,
        resource_id,
        version,
        resource: view(resource_id, version, 800),
        duplicate,
    }
}

fn refusal(msg: &ClientMessage, code: ErrorCode) -> ServerMessage {
    ServerMessage::Error {
        req: Some(msg.req()),
        code,
        message: format!("{code}"),
    }
}

fn command_id(msg: &ClientMessage) -> warden_client::CommandId {
    match msg {
        ClientMessage::Allocate(m) => m.command_id,
        ClientMessage::Add(m) => m.command_id,
        other => panic!("not a command handled here: {other:?}"),
    }
}

fn fast_retries() -> ClientConfig {
    ClientConfig {
        retry: RetryPolicy {
            max_attempts: 5,
            backoff_min: Duration::from_millis(1),
            backoff_max: Duration::from_millis(5),
        },
        reconnect_window: Duration::from_secs(5),
        request_timeout: PATIENCE,
        ..ClientConfig::default()
    }
}

async fn within<T>(what: &str, f: impl Future<Output = T>) -> T {
    tokio::time::timeout(PATIENCE, f)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

#[tokio::test]
async fn connecting_reads_the_welcome_and_presents_the_token_as_a_bearer_header() {
    // Guards the first thing every game does: it learns who it is and the server's limits from
    // `welcome`, and its token reaches the server (in a header, out of URLs and logs).
    let (auth_tx, mut auth_rx) = mpsc::unbounded_channel();
    let url = fake_server(move |mut peer| {
        let auth_tx = auth_tx.clone();
        async move {
            let _ = auth_tx.send(peer.auth.clone());
            while let Some(msg) = peer.recv().await {
                if let ClientMessage::Ping(p) = msg {
                    peer.send(ServerMessage::Pong {
                        req: p.req,
                        server_time: Timestamp(SERVER_TIME.0 + 5),
                    })
                    .await;
                }
            }
        }
    })
    .await;
    let client = Client::connect(&url, "tok.en.sig").await.unwrap();
    let welcome = client.welcome();
    assert_eq!(welcome.player.as_str(), "alice");
    assert_eq!(welcome.role, Role::Player);
    assert_eq!(welcome.server_time, SERVER_TIME);
    assert_eq!(welcome.limits, limits());
    assert_eq!(
        auth_rx.recv().await.unwrap().as_deref(),
        Some("Bearer tok.en.sig")
    );
    assert_eq!(client.ping().await.unwrap(), Timestamp(SERVER_TIME.0 + 5));
}

#[tokio::test]
async fn replies_find_their_callers_by_req_whatever_their_order() {
    // Guards pipelining: the server answers concurrent requests in any order (docs/protocol.md
    // §8), and each caller must get its own reply, not the next one to arrive.
    let id = ResourceId::new();
    let url = fake_server(move |mut peer| async move {
        let first = peer.recv().await.unwrap();
        let second = peer.recv().await.unwrap();
        for msg in [second, first] {
            let reply = match msg {
                ClientMessage::Get(g) => ServerMessage::Resource {
                    req: g.req,
                    resource: view(g.resource_id, 7, 1234),
                },
                ClientMessage::Ping(p) => ServerMessage::Pong {
                    req: p.req,
                    server_time: SERVER_TIME,
                },
                other => panic!("unexpected {other:?}"),
            };
            peer.send(reply).await;
        }
        while peer.recv().await.is_some() {}
    })
    .await;
    let client = Client::connect(&url, "t").await.unwrap();
    let (resource, time) = within("both replies", async {
        tokio::join!(client.get(id), client.ping())
    })
    .await;
    let resource = resource.unwrap();
    assert_eq!(
        (resource.id, resource.version, resource.amount),
        (id, 7, 1234)
    );
    assert_eq!(time.unwrap(), SERVER_TIME);
}

#[tokio::test]
async fn a_command_resent_after_a_dropped_connection_keeps_its_command_id() {
    // Guards exactly-once across a drop: the connection dies before the reply, the client
    // reconnects and resends the same command id, and the server's `duplicate` answer settles it.
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    let url = fake_server(move |mut peer| {
        let log = log.clone();
        async move {
            while let Some(msg) = peer.recv().await {
                log.lock().unwrap().push((peer.index, command_id(&msg)));
                if peer.index == 0 {
                    return; // dropped without an answer: the outcome is unknown to the client
                }
                peer.send(applied(&msg, 2, true)).await;
            }
        }
    })
    .await;
    let client = Client::connect_with(&url, "t", fast_retries())
        .await
        .unwrap();
    let cmd = Command::allocate(ResourceId::new(), 200, "Purchase item");
    let applied = within("the retried command", client.execute_retrying(&cmd))
        .await
        .unwrap();
    assert!(applied.duplicate);
    assert_eq!(applied.command_id, cmd.id());
    assert_eq!(
        *seen.lock().unwrap(),
        vec![(0, cmd.id()), (1, cmd.id())],
        "sent once per connection, with the same id"
    );
    assert!(client.is_connected());
}

#[tokio::test]
async fn retryable_refusals_are_resent_with_the_same_id_and_definite_refusals_never() {
    // Guards the retry rule: `conflict` and `rate_limited` mean "send it again" (same id), while
    // `insufficient` is the command's final answer; resending that would spend twice if the
    // player's situation changed meanwhile.
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    let url = fake_server(move |mut peer| {
        let log = log.clone();
        async move {
            let mut sends = 0;
            while let Some(msg) = peer.recv().await {
                log.lock().unwrap().push(command_id(&msg));
                let reply = match &msg {
                    ClientMessage::Add(_) => {
                        sends += 1;
                        match sends {
                            1 => refusal(&msg, ErrorCode::Conflict),
                            2 => refusal(&msg, ErrorCode::RateLimited),
                            _ => applied(&msg, 3, false),
                        }
                    }
                    _ => refusal(&msg, ErrorCode::Insufficient),
                };
                peer.send(reply).await;
            }
        }
    })
    .await;
    let client = Client::connect_with(&url, "t", fast_retries())
        .await
        .unwrap();
    let add = Command::add(ResourceId::new(), 50, "Quest reward");
    let applied = within("the add", client.execute_retrying(&add))
        .await
        .unwrap();
    assert_eq!((applied.version, applied.duplicate), (3, false));
    assert_eq!(*seen.lock().unwrap(), vec![add.id(); 3]);

    seen.lock().unwrap().clear();
    let spend = Command::allocate(ResourceId::new(), 999_999, "too much");
    let err = within("the allocate", client.execute_retrying(&spend))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            ClientError::Refused {
                code: ErrorCode::Insufficient,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(!err.is_unknown_outcome());
    assert_eq!(*seen.lock().unwrap(), vec![spend.id()], "sent exactly once");
}

#[tokio::test]
async fn a_request_in_flight_when_the_server_closes_fails_with_the_close_code() {
    // Guards what a game shows on shutdown: the close code (1001, going away) reaches the caller,
    // and the command is reported as an unknown outcome (to resend, same id, after reconnecting).
    let url = fake_server(|mut peer| async move {
        if peer.recv().await.is_some() {
            peer.close_with(CloseCode::GoingAway, "server shutting down")
                .await;
        }
    })
    .await;
    let client = Client::connect(&url, "t").await.unwrap();
    let err = within(
        "the close",
        client.execute(&Command::add(ResourceId::new(), 1, "")),
    )
    .await
    .unwrap_err();
    match &err {
        ClientError::Closed { code, reason } => {
            assert_eq!(*code, Some(CloseCode::GoingAway));
            assert_eq!(reason, "server shutting down");
        }
        other => panic!("{other:?}"),
    }
    assert!(err.is_unknown_outcome());
    assert!(
        within("closed()", client.closed())
            .await
            .is_connection_lost()
    );
    assert!(!client.is_connected());
}

/// Reads a `subscribe` and hands it to the test.
async fn expect_subscribe(peer: &mut Peer, to_test: &mpsc::UnboundedSender<Subscribe>) -> u64 {
    match peer.recv().await {
        Some(ClientMessage::Subscribe(s)) => {
            let req = s.req;
            to_test.send(s).unwrap();
            req
        }
        other => panic!("expected subscribe, got {other:?}"),
    }
}

fn update(sub: u64, r: &ClientResource, base_version: u64) -> ServerMessage {
    ServerMessage::Update {
        sub,
        resource_id: r.id,
        base_version,
        version: r.version,
        resource: r.clone(),
    }
}

async fn next_update(sub: &mut warden_client::Subscription) -> Update {
    within("an update", sub.recv()).await.expect("an update")
}

#[tokio::test]
async fn a_resource_subscription_resumes_from_the_last_version_received_after_a_reconnect() {
    // Guards resume: after a slow-consumer close (4008), `reconnect()` subscribes again with
    // `from_version` = the last version the client received, so the game sees every version
    // once, in order, on the same stream.
    let id = ResourceId::new();
    let (subs_tx, mut subs_rx) = mpsc::unbounded_channel();
    let url = fake_server(move |mut peer| {
        let subs_tx = subs_tx.clone();
        async move {
            let req = expect_subscribe(&mut peer, &subs_tx).await;
            if peer.index == 0 {
                peer.send(ServerMessage::Subscribed {
                    req,
                    sub: 1,
                    resources: vec![view(id, 3, 1000)],
                })
                .await;
                peer.send(update(1, &view(id, 4, 900), 3)).await;
                peer.send(update(1, &view(id, 5, 800), 4)).await;
                peer.close_with(
                    CloseCode::SlowConsumer,
                    "slow consumer: resubscribe with from_version",
                )
                .await;
            } else {
                peer.send(ServerMessage::Subscribed {
                    req,
                    sub: 9,
                    resources: vec![],
                })
                .await;
                peer.send(update(9, &view(id, 6, 700), 5)).await;
                while peer.recv().await.is_some() {}
            }
        }
    })
    .await;
    let client = Client::connect(&url, "t").await.unwrap();
    let mut sub = client.subscribe_resource(id, None).await.unwrap();
    let first = subs_rx.recv().await.unwrap();
    assert_eq!((first.resource_id, first.from_version), (Some(id), None));
    assert_eq!(sub.snapshot().len(), 1);
    assert_eq!(sub.snapshot()[0].version, 3);
    for (base, version) in [(3, 4), (4, 5)] {
        let u = next_update(&mut sub).await;
        assert_eq!((u.base_version, u.version), (base, version));
    }
    let closed = within("the close", client.closed()).await;
    assert!(
        matches!(
            closed,
            ClientError::Closed {
                code: Some(CloseCode::SlowConsumer),
                ..
            }
        ),
        "{closed:?}"
    );
    assert!(!sub.is_live());

    within("the reconnect", client.reconnect()).await.unwrap();
    let resumed = subs_rx.recv().await.unwrap();
    assert_eq!(
        (resumed.resource_id, resumed.owner, resumed.from_version),
        (Some(id), None, Some(5))
    );
    let u = next_update(&mut sub).await;
    assert_eq!((u.base_version, u.version, u.resource.amount), (5, 6, 700));
    assert_eq!(sub.last_version(&id), Some(6));
    assert!(sub.is_live());
}

#[tokio::test]
async fn an_owner_subscription_resumes_with_the_current_views_as_updates() {
    // Guards the owner case of resume (the protocol replays no owner log): after a drop, the
    // owner is subscribed anew and each view newer than what the game saw arrives as one update
    // from the last version it saw (0 for a resource created meanwhile); unchanged ones do not.
    let (a, b, c) = (ResourceId::new(), ResourceId::new(), ResourceId::new());
    let (subs_tx, mut subs_rx) = mpsc::unbounded_channel();
    let url = fake_server(move |mut peer| {
        let subs_tx = subs_tx.clone();
        async move {
            let req = expect_subscribe(&mut peer, &subs_tx).await;
            if peer.index == 0 {
                let resources = vec![view(a, 1, 1000), view(b, 2, 500)];
                peer.send(ServerMessage::Subscribed {
                    req,
                    sub: 1,
                    resources,
                })
                .await;
                peer.send(update(1, &view(a, 2, 900), 1)).await;
                // Dropped without a close frame, as a network failure would.
            } else {
                let resources = vec![view(a, 4, 700), view(b, 2, 500), view(c, 1, 1000)];
                peer.send(ServerMessage::Subscribed {
                    req,
                    sub: 2,
                    resources,
                })
                .await;
                peer.send(update(2, &view(a, 5, 600), 4)).await;
                while peer.recv().await.is_some() {}
            }
        }
    })
    .await;
    let client = Client::connect(&url, "t").await.unwrap();
    let owner = PlayerId::new("alice");
    let mut sub = client.subscribe_owner(owner.clone()).await.unwrap();
    assert_eq!(sub.snapshot().len(), 2);
    let u = next_update(&mut sub).await;
    assert_eq!((u.resource_id, u.base_version, u.version), (a, 1, 2));

    let closed = within("the drop", client.closed()).await;
    assert!(
        matches!(closed, ClientError::Closed { code: None, .. }),
        "{closed:?}"
    );
    within("the reconnect", client.reconnect()).await.unwrap();
    let _first = subs_rx.recv().await.unwrap();
    let resumed = subs_rx.recv().await.unwrap();
    assert_eq!(
        (resumed.owner, resumed.resource_id, resumed.from_version),
        (Some(owner), None, None)
    );
    let mut got = Vec::new();
    for _ in 0..3 {
        let u = next_update(&mut sub).await;
        got.push((u.resource_id, u.base_version, u.version));
    }
    assert_eq!(got, vec![(a, 2, 4), (c, 0, 1), (a, 4, 5)]);
}

#[tokio::test]
async fn a_refused_upgrade_reports_its_http_status_and_error_code() {
    // Guards the one hint a game gets that its token is bad or expired (so it fetches a new one
    // instead of retrying forever): the status and the JSON body's code.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        let mut request = Vec::new();
        let mut buf = [0u8; 1024];
        while !request.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = stream.read(&mut buf).await.unwrap();
            if n == 0 {
                return;
            }
            request.extend_from_slice(&buf[..n]);
        }
        let body = r#"{"code":"token_expired","message":"token expired"}"#;
        let answer = format!(
            "HTTP/1.1 401 Unauthorized\r\ncontent-type: application/json\r\n\
             content-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
        stream.write_all(answer.as_bytes()).await.unwrap();
        let _ = stream.shutdown().await;
    });
    let err = Client::connect(&format!("ws://{addr}"), "expired")
        .await
        .unwrap_err();
    match err {
        ClientError::Upgrade {
            status,
            code,
            message,
        } => {
            assert_eq!(status, 401);
            assert_eq!(code, Some(ErrorCode::TokenExpired));
            assert_eq!(message.as_deref(), Some("token expired"));
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn dropping_the_last_client_handle_ends_the_subscription_streams() {
    // Guards against a game's update loop hanging forever once it dropped its client.
    let url = fake_server(|mut peer| async move {
        if let Some(ClientMessage::Subscribe(s)) = peer.recv().await {
            peer.send(ServerMessage::Subscribed {
                req: s.req,
                sub: 1,
                resources: vec![],
            })
            .await;
        }
        while peer.recv().await.is_some() {}
    })
    .await;
    let client = Client::connect(&url, "t").await.unwrap();
    let mut sub = client
        .subscribe_resource(ResourceId::new(), Some(0))
        .await
        .unwrap();
    assert!(sub.snapshot().is_empty());
    drop(client);
    assert_eq!(within("the end of the stream", sub.recv()).await, None);
}
