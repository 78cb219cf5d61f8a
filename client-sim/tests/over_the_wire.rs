//! client-sim against a real Warden server started in this process on port 0 (embedded store in
//! a temporary directory, the real clock): the seed scenario, and short swarms whose invariant
//! check must pass.

// The workspace's one test support (a server on port 0 and the rest), shared with warden's own
// integration tests.
use warden_testkit as support;

use client_sim::swarm::{SwarmConfig, run};
use client_sim::tokens::TokenKeys;
use std::time::Duration;
use support::LocalServer;
use support::server::SECRET;
use tokio_util::sync::CancellationToken;
use warden_protocol::ErrorCode;

/// The keys client-sim signs with for a local server (which verifies with [`SECRET`]).
fn keys() -> TokenKeys {
    TokenKeys::from_secret(SECRET.as_bytes())
}

fn short_swarm(url: &str) -> SwarmConfig {
    SwarmConfig {
        url: url.to_owned(),
        bots: 6,
        spectators: 2,
        duration: Duration::from_secs(2),
        ramp_up: Duration::from_millis(200),
        guild_fraction: 0.5,
        guild_resources: 2,
        watch: 6,
        lock_ms: 10_000,
        ..SwarmConfig::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_seed_scenario_runs_over_the_wire_as_the_seed_says() {
    // Guards against the wire path diverging from the core's rules: step 5 must be refused with
    // `locked`, every other step must succeed with the seed's amounts, and the read model must
    // show the final state.
    let server = LocalServer::with_real_clock().await;
    let report = client_sim::scenario::run(&server.base_url(), &keys())
        .await
        .unwrap();
    print!("{}", report.to_text());
    assert!(report.ok());
    assert_eq!(report.steps.len(), 7);
    // The steps sent are the seed's, each judged by what the seed expects of it.
    for (step, seed) in report.steps.iter().zip(&warden_protocol::seed::SEED_STEPS) {
        assert_eq!((step.title, step.expect), (seed.title, seed.expect));
    }
    assert_eq!(
        report.steps[4].result.as_ref().unwrap_err().0,
        ErrorCode::Locked
    );
    let last = report.steps[6].result.as_ref().unwrap();
    assert_eq!(
        last.version, 6,
        "six events: the refused allocate wrote nothing"
    );
    assert!(
        report
            .read_models
            .iter()
            .any(|r| r.id == report.resource_id && r.version == 6)
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_closed_loop_swarm_keeps_every_acknowledged_promise() {
    // Guards against lost, duplicated or unreported writes under concurrent bots contending on
    // shared resources, and against spectators missing or repeating versions.
    let server = LocalServer::with_real_clock().await;
    let config = short_swarm(&server.base_url());
    let report = run(config, keys(), CancellationToken::new(), |_, _| {})
        .await
        .unwrap();
    print!("{}", report.to_text());
    assert!(report.ok(), "{:?}", report.violations);
    assert!(report.commands > 0);
    assert_eq!(
        report.connections,
        6 + 2,
        "every bot and spectator held a connection"
    );
    assert_eq!(
        report.resources_checked,
        6 + 2,
        "each bot's resource and the two guild ones"
    );
    assert!(report.subscriptions_checked >= 6 + 2);
    assert!(report.updates_received > 0, "spectators saw live updates");
    assert_eq!(report.connect_failures, 0);

    // The JSON carries the documented keys.
    let json: serde_json::Value = serde_json::from_str(&report.to_json()).unwrap();
    for key in [
        "commands",
        "commands_per_s",
        "errors",
        "connections",
        "invariant_violations",
    ] {
        assert!(json.get(key).is_some(), "missing {key}");
    }
    for key in ["p50", "p90", "p99", "p999", "max"] {
        assert!(
            json["latency_us"].get(key).is_some(),
            "missing latency_us.{key}"
        );
    }
    for key in ["p50", "p99"] {
        assert!(
            json["delivery_lag_us"].get(key).is_some(),
            "missing delivery_lag_us.{key}"
        );
    }

    // And the picture is an SVG a browser opens.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("report.svg");
    client_sim::plot::write_svg(&report, &path).unwrap();
    let svg = std::fs::read_to_string(&path).unwrap();
    assert!(svg.starts_with("<svg"));
    assert!(svg.contains("latency distribution"));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_open_loop_swarm_keeps_every_acknowledged_promise() {
    // Guards the open-loop path (several requests in flight per connection) the same way.
    let server = LocalServer::with_real_clock().await;
    let config = SwarmConfig {
        rate: Some(300.0),
        ..short_swarm(&server.base_url())
    };
    let report = run(config, keys(), CancellationToken::new(), |_, _| {})
        .await
        .unwrap();
    print!("{}", report.to_text());
    assert!(report.ok(), "{:?}", report.violations);
    assert_eq!(report.mode, "open");
    assert!(report.commands > 0);
    server.stop().await;
}

/// Runs the `client-sim` binary for a one-second swarm against `server`, in `dir`.
async fn swarm_binary(server: &LocalServer, dir: &std::path::Path, extra: &[&str]) {
    let status = tokio::process::Command::new(env!("CARGO_BIN_EXE_client-sim"))
        .current_dir(dir)
        .args(["--url", &server.base_url(), "--secret", SECRET])
        .args([
            "swarm",
            "--bots",
            "2",
            "--spectators",
            "1",
            "--duration",
            "1s",
        ])
        .args([
            "--ramp-up",
            "100ms",
            "--guild-resources",
            "1",
            "--watch",
            "2",
        ])
        .args(extra)
        .stdout(std::process::Stdio::null())
        .status()
        .await
        .unwrap();
    assert!(status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_swarm_writes_a_picture_only_when_asked() {
    // Guards against: littering the working directory with an SVG nobody asked for.
    let server = LocalServer::with_real_clock().await;
    let dir = tempfile::tempdir().unwrap();
    swarm_binary(&server, dir.path(), &[]).await;
    let files: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert!(files.is_empty(), "nothing written: {files:?}");
    swarm_binary(&server, dir.path(), &["--plot", "run.svg"]).await;
    let svg = std::fs::read_to_string(dir.path().join("run.svg")).unwrap();
    assert!(svg.starts_with("<svg") || svg.contains("<svg"));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_swarm_rides_out_a_server_restart_and_its_check_still_passes() {
    // Guards against: bots giving up (or double-applying) when the server goes away mid-run, and
    // spectators stopping or missing versions instead of resuming with from_version.
    let mut server = LocalServer::with_real_clock().await;
    let keys = keys();
    let config = SwarmConfig {
        duration: Duration::from_secs(6),
        spectators: 3,
        ..short_swarm(&server.base_url())
    };
    // Mid-run the server goes away (every session closed), and comes back on the same address.
    let restart = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(3)).await;
        server.restart(Duration::from_millis(500)).await;
        server
    });
    let report = run(config, keys.clone(), CancellationToken::new(), |_, _| {})
        .await
        .unwrap();
    let server = restart.await.unwrap();
    print!("{}", report.to_text());
    assert!(report.ok(), "{:?}", report.violations);
    assert!(
        report.errors.get("disconnected").copied().unwrap_or(0) > 0
            && report.errors.get("spectator_dropped").copied().unwrap_or(0) > 0,
        "bots and spectators saw the restart: {:?}",
        report.errors
    );
    assert!(report.subscriptions_checked >= 6 + 2);
    server.stop().await;
}
