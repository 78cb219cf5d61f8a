//! A failing disk under a running `warden serve`: fail-stop, then recovery by itself.
//!
//! A preload library (built here with `cc`) makes `fsync`/`fdatasync` fail with EIO while a
//! control file exists, as a failing device or a write-back error would. Guards against: the
//! zombie (the engine poisoned for good, `/readyz` still 200, every write `unavailable` until an
//! outside restart), a cause that does not reach the log, a log flooded per request, and any
//! acknowledged command lost or applied twice across the fault and the recovery.

use warden_testkit as support;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};
use support::process::ServeProcess;
use warden_protocol::{ClientMessage, CommandId, ErrorCode, ResourceId, Role, ServerMessage};

const SHIM: &str = r#"
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stdlib.h>
#include <unistd.h>
static int failing(void) {
    const char *p = getenv("WARDEN_TEST_FAIL_SYNC_WHILE");
    return p && access(p, F_OK) == 0;
}
int fdatasync(int fd) {
    static int (*real)(int);
    if (!real) real = (int (*)(int))dlsym(RTLD_NEXT, "fdatasync");
    if (failing()) { errno = EIO; return -1; }
    return real(fd);
}
int fsync(int fd) {
    static int (*real)(int);
    if (!real) real = (int (*)(int))dlsym(RTLD_NEXT, "fsync");
    if (failing()) { errno = EIO; return -1; }
    return real(fd);
}
"#;

/// Builds the preload library in `dir`.
fn build_shim(dir: &Path) -> PathBuf {
    let src = dir.join("failsync.c");
    let lib = dir.join("libfailsync.so");
    std::fs::write(&src, SHIM).unwrap();
    let status = Command::new("cc")
        .args(["-shared", "-fPIC", "-O2", "-o"])
        .arg(&lib)
        .arg(&src)
        .arg("-ldl")
        .status()
        .expect("a C compiler (`cc`) builds the fault-injecting preload library");
    assert!(status.success(), "cc failed");
    lib
}

/// `warden serve` under the preload library, failing syncs while `control` exists.
fn start(data: &Path, shim: &Path, control: &Path) -> ServeProcess {
    start_with(data, shim, control, "reopen")
}

/// [`start`] with `--on-store-failure on_failure`.
fn start_with(data: &Path, shim: &Path, control: &Path, on_failure: &str) -> ServeProcess {
    ServeProcess::start(
        Path::new(env!("CARGO_BIN_EXE_warden")),
        &[
            "--admin-listen".as_ref(),
            "127.0.0.1:0".as_ref(),
            "--data-dir".as_ref(),
            data.as_os_str(),
            "--on-store-failure".as_ref(),
            on_failure.as_ref(),
        ],
        &[
            ("LD_PRELOAD", shim.as_os_str()),
            ("WARDEN_TEST_FAIL_SYNC_WHILE", control.as_os_str()),
        ],
    )
}

async fn readyz(server: &ServeProcess) -> (u16, String) {
    let admin = server.admin.as_ref().expect("the admin listener is on");
    let r = reqwest::get(format!("{admin}/readyz")).await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

fn add(id: ResourceId, command_id: CommandId) -> impl FnOnce(u64) -> ClientMessage {
    move |req| {
        ClientMessage::Add(warden_protocol::Add {
            req,
            command_id,
            resource_id: id,
            amount: 1,
            reason: String::new(),
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_sync_stops_writes_turns_readyz_503_and_the_node_recovers_by_itself() {
    let tmp = tempfile::tempdir().unwrap();
    let shim = build_shim(tmp.path());
    let data = tmp.path().join("data");
    let control = tmp.path().join("fail-sync");
    let server = start(&data, &shim, &control);
    let keys = warden_net::auth::TokenKeys::load(&data).unwrap();
    let url = format!(
        "ws://{}/v1?token={}",
        server.game,
        keys.mint("alice", Role::Player, 600)
    );
    let mut alice = support::Client::connect(&url).await.unwrap();
    let wood = match alice
        .request(|req| {
            ClientMessage::Create(warden_protocol::Create {
                req,
                command_id: CommandId::new(),
                resource_type: "wood".into(),
                name: Some("wood:stash".into()),
                owner: None,
                params: None,
            })
        })
        .await
    {
        ServerMessage::Applied { resource_id, .. } => resource_id,
        other => panic!("create: {other:?}"),
    };
    // Every command sent, and what it was last answered: applied (with its version) or not yet.
    let mut acked: HashMap<CommandId, u64> = HashMap::new();
    let mut unknown: Vec<CommandId> = Vec::new();
    for _ in 0..20 {
        let id = CommandId::new();
        match alice.request(add(wood, id)).await {
            ServerMessage::Applied { version, .. } => {
                acked.insert(id, version);
            }
            other => panic!("before the fault: {other:?}"),
        }
    }
    assert_eq!(readyz(&server).await.0, 200);

    // When syncs start failing, commands are answered unavailable (an unknown outcome),
    std::fs::write(&control, b"").unwrap();
    for _ in 0..20 {
        let id = CommandId::new();
        match alice.request(add(wood, id)).await {
            ServerMessage::Error { code, .. } => {
                assert_eq!(code, ErrorCode::Unavailable);
                unknown.push(id);
            }
            ServerMessage::Applied { version, .. } => {
                panic!("acknowledged during the fault at {version}")
            }
            other => panic!("during the fault: {other:?}"),
        }
    }
    // /readyz turns 503 and says why, and the log has the cause once, not a line per command.
    let (status, body) = readyz(&server).await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("reopened"), "{body}");
    let failed = server.logged("the store failed:");
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert!(failed[0].contains("Input/output error"), "{}", failed[0]);
    let per_request = server.logged("request failed on the store");
    assert!(per_request.len() <= 2, "{per_request:?}");

    // Once the device is healthy again, the node reopens by itself: ready, and taking writes.
    std::fs::remove_file(&control).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while readyz(&server).await.0 != 200 {
        assert!(Instant::now() < deadline, "not ready again within 30 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(server.logged("the store is reopened").len(), 1);
    // The unknown outcomes, resent with their ids, settle: each applied once (now, or before).
    for id in unknown {
        match alice.request(add(wood, id)).await {
            ServerMessage::Applied { version, .. } => {
                acked.insert(id, version);
            }
            other => panic!("a resend after recovery: {other:?}"),
        }
    }
    for _ in 0..5 {
        let id = CommandId::new();
        match alice.request(add(wood, id)).await {
            ServerMessage::Applied { version, .. } => {
                acked.insert(id, version);
            }
            other => panic!("after recovery: {other:?}"),
        }
    }

    // Every acknowledged command is in the log exactly once, at the version it was acknowledged
    // with; the log has no gap and nothing else; the amount is the number of adds.
    let mut events = Vec::new();
    loop {
        let after = events
            .last()
            .map_or(0, |e: &warden_protocol::HistoryEvent| e.version);
        let page = match alice
            .request(|req| {
                ClientMessage::History(warden_protocol::History {
                    req,
                    resource_id: wood,
                    after_version: after,
                    limit: None,
                })
            })
            .await
        {
            ServerMessage::History { events, .. } => events,
            other => panic!("history: {other:?}"),
        };
        if page.is_empty() {
            break;
        }
        events.extend(page);
    }
    let versions: Vec<u64> = events.iter().map(|e| e.version).collect();
    assert_eq!(
        versions,
        (1..=events.len() as u64).collect::<Vec<_>>(),
        "no gap"
    );
    for (id, version) in &acked {
        let found: Vec<_> = events.iter().filter(|e| e.command_id == *id).collect();
        assert_eq!(found.len(), 1, "{id} once");
        assert_eq!(found[0].version, *version, "{id} at its version");
    }
    assert_eq!(
        events.len(),
        acked.len() + 1,
        "the create and the acknowledged adds, nothing else"
    );
    match alice.get(wood).await {
        ServerMessage::Resource { resource, .. } => {
            assert_eq!(resource.amount, acked.len() as u64);
            assert_eq!(resource.version, events.len() as u64);
        }
        other => panic!("get: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_on_store_failure_exit_the_server_exits_75_for_its_supervisor_and_restarts_whole() {
    let tmp = tempfile::tempdir().unwrap();
    let shim = build_shim(tmp.path());
    let data = tmp.path().join("data");
    let control = tmp.path().join("fail-sync");
    let mut server = start_with(&data, &shim, &control, "exit");
    let keys = warden_net::auth::TokenKeys::load(&data).unwrap();
    let url = |game| {
        format!(
            "ws://{game}/v1?token={}",
            keys.mint("alice", Role::Player, 600)
        )
    };
    let mut alice = support::Client::connect(&url(server.game)).await.unwrap();
    let gold = alice.create_id("gold").await;
    let acked = CommandId::new();
    assert!(matches!(
        alice.request(add(gold, acked)).await,
        ServerMessage::Applied { version: 2, .. }
    ));
    // When a sync fails, the process exits with 75, saying why;
    std::fs::write(&control, b"").unwrap();
    // (sent without waiting for a reply: the connection ends with the process)
    let req = alice.next_req();
    alice.send(&add(gold, CommandId::new())(req)).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = server.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "still running 30 s after the failure"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(status.code(), Some(75));
    assert_eq!(server.logged("exiting for the supervisor").len(), 1);
    // restarted on a healthy disk (as a supervisor would), it has every acknowledged command.
    std::fs::remove_file(&control).unwrap();
    drop(server);
    let server = start(&data, &shim, &control);
    let mut alice = support::Client::connect(&url(server.game)).await.unwrap();
    match alice.request(add(gold, acked)).await {
        ServerMessage::Applied {
            duplicate, version, ..
        } => assert_eq!((duplicate, version), (true, 2)),
        other => panic!("after the restart: {other:?}"),
    }
}
