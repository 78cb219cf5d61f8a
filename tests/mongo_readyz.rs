//! `/readyz` follows MongoDB: 503 while it is unreachable, 200 again when it returns, with the
//! same node. Guards against a balancer sending players to a node whose store is gone.
//!
//! Runs its own nx-27017 on its own port (killed and restarted on the same data), found through
//! `WARDEN_TEST_NX27017` (set by `scripts/test`) or in `.mongo-venv/bin/`.
#![cfg(feature = "mongodb")]

use warden_testkit as support;

use std::sync::Arc;
use std::time::Duration;
use support::LocalAdmin;
use support::mongo::{self, OwnMongo, PATIENCE, free_port, node_on};
use tokio_util::sync::CancellationToken;
use warden::admin::AdminState;

/// `warden_store_round_trips_total{op}` as `/metrics` shows it (parsed, not string-matched).
async fn round_trips_metric(base: &str, op: &str) -> u64 {
    let text = reqwest::get(format!("{base}/metrics"))
        .await
        .expect("HTTP")
        .text()
        .await
        .expect("a body");
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned())))
        .expect("Prometheus text");
    scrape
        .samples
        .iter()
        .find(|s| s.metric == "warden_store_round_trips_total" && s.labels.get("op") == Some(op))
        .map(|s| match s.value {
            prometheus_parse::Value::Counter(v) => v as u64,
            ref other => panic!("a counter, got {other:?}"),
        })
        .unwrap_or(0)
}

/// GET `/readyz`: the status and the body's `reason` (if any).
async fn readyz(base: &str) -> (u16, Option<String>) {
    let response = reqwest::get(format!("{base}/readyz")).await.expect("HTTP");
    let status = response.status().as_u16();
    let text = response.text().await.expect("a body");
    let body: serde_json::Value = serde_json::from_str(&text).expect("a JSON body");
    (status, body["reason"].as_str().map(str::to_owned))
}

/// Polls `/readyz` until it answers `status`.
async fn until_status(base: &str, status: u16) -> Option<String> {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let (now, reason) = readyz(base).await;
        if now == status {
            return reason;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "/readyz never answered {status} (last {now}, {reason:?})"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_is_503_while_mongodb_is_unreachable_and_200_when_it_returns() {
    // Given a node on our own MongoDB, with its admin listener,
    let data = tempfile::tempdir().unwrap();
    let port = free_port();
    let mongo = OwnMongo::start(port, data.path());
    let uri = format!("mongodb://127.0.0.1:{port}/?directConnection=true");
    let store = mongo::store_at(&uri, "readyz").await;
    let node = Arc::new(node_on(store.clone()));
    let state = AdminState::new(node.clone(), CancellationToken::new())
        .with_ready_timeout(Duration::from_secs(1))
        .with_mongo(store.clone());
    let admin = LocalAdmin::start(state).await;
    let base = admin.base.clone();
    assert_eq!(readyz(&base).await, (200, None));
    // /metrics counts the store's round trips by kind, as the store itself does.
    let sent = store.round_trips();
    let finds = round_trips_metric(&base, "find").await;
    assert!(
        finds >= sent.finds && finds > 0,
        "readyz's reads are counted: {finds} (store: {})",
        sent.finds
    );

    // When MongoDB dies, /readyz answers 503 with a store reason (and /healthz still 200),
    drop(mongo);
    let reason = until_status(&base, 503).await;
    assert!(
        matches!(
            reason.as_deref(),
            Some("store_unavailable" | "store_timeout")
        ),
        "a store reason, got {reason:?}"
    );
    let health = reqwest::get(format!("{base}/healthz")).await.unwrap();
    assert_eq!(health.status().as_u16(), 200);

    // and when it returns on the same port and data, 200 again without a restart.
    let _mongo = OwnMongo::start(port, data.path());
    until_status(&base, 200).await;

    admin.stop().await;
    Arc::into_inner(node)
        .expect("the admin listener let go of the node")
        .shutdown()
        .await;
}
