//! The admin listener as an operator and a load balancer use it: `/metrics` parsed as Prometheus
//! text with a real HTTP client, `/healthz`, `/readyz` through a graceful shutdown, and the JSON
//! logs of the real `warden` binary.

use warden_testkit as support;

use prometheus_parse::{Sample, Scrape, Value};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use support::{LocalAdmin, LocalServer, PATIENCE, applied, error_code, wait_for_some};
use warden_core::domain::{CommandId, Role};
use warden_protocol::ErrorCode;
use warden_protocol::{ClientMessage, ServerMessage};

/// The value of the counter or gauge `name` whose labels include `labels`.
fn value(scrape: &Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    let found: Vec<&Sample> = scrape
        .samples
        .iter()
        .filter(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .collect();
    assert_eq!(found.len(), 1, "one sample of {name} {labels:?}");
    match found[0].value {
        Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => v,
        ref other => panic!("{name} is not a number: {other:?}"),
    }
}

/// The observation count (the `+Inf` bucket) of histogram `name` with these labels.
fn histogram_count(scrape: &Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    let found: Vec<&Sample> = scrape
        .samples
        .iter()
        .filter(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .collect();
    assert_eq!(found.len(), 1, "one histogram {name} {labels:?}");
    match &found[0].value {
        Value::Histogram(buckets) => {
            buckets
                .iter()
                .find(|b| b.less_than.is_infinite())
                .expect("a +Inf bucket")
                .count
        }
        other => panic!("{name} is not a histogram: {other:?}"),
    }
}

// Guards against: counters that miss or double-count commands, outcomes filed under the wrong
// label, and latency histograms that do not see every answered command.
#[tokio::test]
async fn metrics_count_exactly_the_commands_sent_by_kind_and_outcome() {
    let server = LocalServer::start().await;
    let admin = LocalAdmin::of(&server).await;
    let mut alice = server.connect("alice", Role::Player).await;

    // Given 3 applied commands (create, add, lock), 1 refused `locked`, 1 duplicate add.
    let id = alice.create_id("wood").await;
    let add_id = CommandId::new();
    let add = |req| {
        ClientMessage::Add(warden_protocol::Add {
            req,
            command_id: add_id,
            resource_id: id,
            amount: 5,
            reason: "quest".into(),
        })
    };
    applied(&alice.request(add).await);
    applied(&alice.lock(id, "trade", 60_000).await);
    assert_eq!(error_code(&alice.allocate(id, 1).await), ErrorCode::Locked);
    match alice.request(add).await {
        ServerMessage::Applied { duplicate, .. } => assert!(duplicate, "a repeat is a duplicate"),
        other => panic!("expected applied, got {other:?}"),
    }

    // Then /metrics shows exactly those.
    let scrape = admin.scrape().await;
    let commands: Vec<(String, String, f64)> = scrape
        .samples
        .iter()
        .filter(|s| s.metric == "warden_commands_total")
        .map(|s| {
            let v = match s.value {
                Value::Counter(v) => v,
                ref other => panic!("a counter, got {other:?}"),
            };
            (
                s.labels.get("kind").unwrap().to_owned(),
                s.labels.get("outcome").unwrap().to_owned(),
                v,
            )
        })
        .filter(|(_, _, v)| *v != 0.0)
        .collect();
    let mut commands = commands;
    commands.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
    let expected = [
        ("add", "applied", 1.0),
        ("add", "duplicate", 1.0),
        ("allocate", "locked", 1.0),
        ("create", "applied", 1.0),
        ("lock", "applied", 1.0),
    ];
    let expected: Vec<(String, String, f64)> = expected
        .iter()
        .map(|(k, o, v)| (k.to_string(), o.to_string(), *v))
        .collect();
    assert_eq!(commands, expected);

    // And the latency histogram counted each answered command under its kind.
    for (kind, n) in [
        ("create", 1.0),
        ("add", 2.0),
        ("lock", 1.0),
        ("allocate", 1.0),
        ("unlock", 0.0),
    ] {
        assert_eq!(
            histogram_count(
                &scrape,
                "warden_command_duration_seconds",
                &[("kind", kind)]
            ),
            n,
            "{kind} commands timed"
        );
    }
    assert!(
        histogram_count(&scrape, "warden_commit_duration_seconds", &[]) >= 3.0,
        "the three applied commands were committed, each timed"
    );
    assert!(value(&scrape, "warden_store_group_commits_total", &[]) >= 3.0);
    for (kind, n) in [
        ("create", 1.0),
        ("add", 2.0),
        ("lock", 1.0),
        ("allocate", 1.0),
    ] {
        assert_eq!(
            value(&scrape, "warden_messages_received_total", &[("type", kind)]),
            n
        );
    }
    assert_eq!(
        value(
            &scrape,
            "warden_messages_sent_total",
            &[("type", "applied")]
        ),
        4.0
    );
    assert_eq!(
        value(&scrape, "warden_messages_sent_total", &[("type", "error")]),
        1.0
    );
    assert_eq!(value(&scrape, "warden_connections_open", &[]), 1.0);
    assert_eq!(value(&scrape, "warden_connections_opened_total", &[]), 1.0);
    assert_eq!(value(&scrape, "warden_actors_live", &[]), 1.0);
    assert!(value(&scrape, "warden_store_disk_bytes", &[]) > 0.0);
    // The commands above sit in the engine's memtables (nothing has filled one yet).
    assert!(value(&scrape, "warden_store_write_buffer_bytes", &[]) > 0.0);
    assert!(value(&scrape, "warden_store_block_cache_bytes", &[]) >= 0.0);
    assert!(value(&scrape, "process_resident_memory_bytes", &[]) > 0.0);
    assert!(value(&scrape, "process_open_fds", &[]) > 0.0);
    // Present (a young test process may not have used one clock tick yet).
    assert!(value(&scrape, "warden_process_cpu_seconds_total", &[]) >= 0.0);
    // Every metric of ours carries a help line.
    for sample in scrape
        .samples
        .iter()
        .filter(|s| s.metric.starts_with("warden_"))
    {
        let base = sample
            .metric
            .trim_end_matches("_count")
            .trim_end_matches("_sum");
        assert!(
            scrape.docs.contains_key(base) || scrape.docs.contains_key(&sample.metric),
            "{} has a help line",
            sample.metric
        );
    }

    // When the client leaves, the session is counted as closed by the client.
    drop(alice);
    let admin_ref = &admin;
    let scrape = wait_for_some(
        "the closed session to be counted",
        PATIENCE,
        || async move {
            let scrape = admin_ref.scrape().await;
            let closed = value(
                &scrape,
                "warden_connections_closed_total",
                &[("code", "client")],
            );
            (closed == 1.0).then_some(scrape)
        },
    )
    .await;
    assert_eq!(value(&scrape, "warden_connections_open", &[]), 0.0);
    admin.stop().await;
    server.stop().await;
}

// Guards against: a rate limit, malformed input or a subscription that the metrics do not show.
#[tokio::test]
async fn metrics_show_rate_limits_malformed_messages_and_subscriptions() {
    let server = LocalServer::start_with(warden_net::NetConfig {
        commands_per_second: 1,
        commands_burst: 2,
        ..warden_net::NetConfig::default()
    })
    .await;
    let admin = LocalAdmin::of(&server).await;
    let mut bob = server.connect("bob", Role::Player).await;
    let id = bob.create_id("wood").await;
    applied(&bob.add(id, 1).await);
    assert_eq!(error_code(&bob.add(id, 1).await), ErrorCode::RateLimited);
    bob.send_raw(vec![0xc1]).await; // never valid MessagePack
    assert_eq!(
        error_code(&bob.recv().await.unwrap()),
        ErrorCode::BadMessage
    );
    match bob.subscribe(id, None).await {
        ServerMessage::Subscribed { .. } => {}
        other => panic!("expected subscribed, got {other:?}"),
    }

    let scrape = admin.scrape().await;
    assert_eq!(value(&scrape, "warden_rate_limited_total", &[]), 1.0);
    assert_eq!(
        value(
            &scrape,
            "warden_commands_total",
            &[("kind", "add"), ("outcome", "rate_limited")]
        ),
        1.0
    );
    assert_eq!(value(&scrape, "warden_malformed_messages_total", &[]), 1.0);
    assert_eq!(value(&scrape, "warden_subscriptions_open", &[]), 1.0);
    admin.stop().await;
    server.stop().await;
}

// Guards against: a balancer that keeps sending players to a node that is draining.
#[tokio::test]
async fn readyz_turns_503_when_shutdown_begins_before_sessions_close() {
    let server = LocalServer::start().await;
    let admin = LocalAdmin::of(&server).await;
    let (status, body) = admin.get("/healthz").await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = admin.get("/readyz").await;
    assert_eq!(status, 200, "{body}");

    // Given a session with commands in flight…
    let mut carol = server.connect("carol", Role::Player).await;
    let id = carol.create_id("wood").await;
    for _ in 0..200 {
        let req = carol.next_req();
        carol
            .send(&ClientMessage::Add(warden_protocol::Add {
                req,
                command_id: CommandId::new(),
                resource_id: id,
                amount: 1,
                reason: String::new(),
            }))
            .await;
    }
    // …when graceful shutdown begins,
    server.shutdown_token().cancel();
    // then /readyz is 503 with a reason while /healthz still answers 200.
    let (status, body) = admin.get("/readyz").await;
    assert_eq!(status, 503);
    let reason: serde_json::Value = serde_json::from_str(&body).expect("a JSON body");
    assert_eq!(reason["reason"], "shutting_down");
    let (status, _) = admin.get("/healthz").await;
    assert_eq!(status, 200);

    // And the session, still open until its in-flight commands are answered, closes with 1001.
    let close = loop {
        use futures::StreamExt;
        use tokio_tungstenite::tungstenite::Message;
        match tokio::time::timeout(PATIENCE, carol.ws.next())
            .await
            .expect("closed in time")
        {
            Some(Ok(Message::Close(frame))) => break frame,
            Some(Ok(_)) => continue,
            other => panic!("connection ended without a close frame: {other:?}"),
        }
    };
    assert_eq!(u16::from(close.expect("a close frame").code), 1001);
    admin.stop().await;
    server.stop().await;
}

/// Reads the child's stderr lines on a thread, forwarding them.
fn lines_of(stderr: std::process::ChildStderr) -> std::sync::mpsc::Receiver<String> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

// Guards against: text logs written to a file or a pipe full of terminal colour codes (ESC [ …),
// which a log shipper or `grep` then has to strip.
#[tokio::test]
async fn text_logs_to_a_pipe_carry_no_colour_codes() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_warden"))
        .args(["serve", "--listen", "127.0.0.1:0", "--admin-listen", "off"])
        .arg("--data-dir")
        .arg(dir.path())
        .env("RUST_LOG", "warden=info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start warden");
    let lines = lines_of(child.stderr.take().unwrap());
    let mut read = Vec::new();
    while !read.iter().any(|l: &String| l.contains("warden serving")) {
        read.push(
            lines
                .recv_timeout(PATIENCE)
                .expect("warden logs its start line in time"),
        );
    }
    child.kill().unwrap();
    let _ = child.wait();
    for line in &read {
        assert!(!line.contains('\x1b'), "a colour code in {line:?}");
    }
}

// Guards against: log lines a log shipper cannot parse, a missing connection line, and a token
// written to the logs.
#[tokio::test]
async fn json_logs_are_one_object_per_line_with_connection_lines_and_no_token() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_warden"))
        .args(["serve", "--log-format", "json", "--listen", "127.0.0.1:0"])
        .args(["--admin-listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .env("RUST_LOG", "warden=debug")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start warden");
    let lines = lines_of(child.stderr.take().unwrap());
    let mut seen: Vec<serde_json::Value> = Vec::new();
    let next = |seen: &mut Vec<serde_json::Value>| {
        let line = lines
            .recv_timeout(PATIENCE)
            .expect("warden logs a line in time");
        let value: serde_json::Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("not a JSON object ({e}): {line}"));
        assert!(value.is_object(), "one object per line: {line}");
        seen.push(value.clone());
        (line, value)
    };
    // The start line says where the game port, the admin port and the data are.
    let start = loop {
        let (_, v) = next(&mut seen);
        if v.get("game").is_some() {
            break v;
        }
    };
    let game: SocketAddr = start["game"]
        .as_str()
        .unwrap()
        .trim_start_matches("ws://")
        .trim_end_matches("/v1")
        .parse()
        .unwrap();
    assert!(
        start["admin"]
            .as_str()
            .unwrap()
            .starts_with("http://127.0.0.1:")
    );
    assert_eq!(
        start["data"].as_str().unwrap(),
        dir.path().display().to_string()
    );
    let admin = start["admin"].as_str().unwrap().to_owned();
    let (status, _) = (reqwest::get(&admin).await.unwrap().status().as_u16(), ());
    assert_eq!(status, 200, "the logged admin address serves /metrics");

    // An upgrade with a token signed by another secret is refused: the answer and the log line
    // say which check failed, and neither holds the token.
    let forged = warden_net::auth::TokenKeys::from_secret(b"another secret").mint(
        "mallory",
        Role::Player,
        3600,
    );
    let (status, body) = support::process::refused_upgrade(game, &forged).await;
    assert_eq!(status, 401);
    assert_eq!(body["code"], "unauthorized");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .starts_with("the token is not valid: "),
        "{body}"
    );
    let logged = loop {
        let (line, v) = next(&mut seen);
        assert!(!line.contains(&forged), "a token was logged: {line}");
        if v["message"] == "upgrade refused" {
            break v;
        }
    };
    assert_eq!(logged["code"], "unauthorized");
    assert_eq!(logged["reason"], body["message"]);

    // A session that sends a command, then leaves.
    let keys = warden_net::auth::TokenKeys::load(dir.path()).unwrap();
    let token = keys.mint("dave", Role::Player, 3600);
    let mut dave = support::Client::connect(&format!("ws://{game}/v1?token={token}"))
        .await
        .unwrap();
    dave.create_id("wood").await;
    dave.ws.close(None).await.unwrap();
    drop(dave);
    let closed = loop {
        let (line, v) = next(&mut seen);
        assert!(!line.contains(&token), "a token was logged: {line}");
        if v["message"] == "connection closed" {
            break v;
        }
    };
    assert_eq!(closed["player"], "dave");
    assert_eq!(closed["role"], "player");
    assert_eq!(closed["close_code"], "client");
    assert_eq!(closed["messages_in"], 1);
    assert!(
        closed["messages_out"].as_u64().unwrap() >= 2,
        "welcome and applied"
    );
    assert!(closed["duration_ms"].is_u64());
    assert!(
        seen.iter()
            .any(|v| v["message"] == "connection opened" && v["player"] == "dave"),
        "the opening was logged"
    );
    assert!(
        seen.iter().any(|v| v["message"] == "command answered"),
        "per-command lines at debug"
    );

    // A graceful stop logs JSON to the end.
    let pid = child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let status = child.wait().unwrap();
    while let Ok(line) = lines.recv_timeout(std::time::Duration::from_secs(5)) {
        assert!(!line.contains(&token), "a token was logged: {line}");
        let value: serde_json::Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("not a JSON object ({e}): {line}"));
        assert!(value.is_object());
    }
    assert!(status.success(), "warden stopped cleanly: {status}");
}
