//! Recovery after kill -9, at scale: a child process fills a data directory with N events through
//! the store's group commit and keeps writing; it is killed with SIGKILL at a random moment
//! (mid-commit, likely), and the parent times reopening the directory, the first read and the
//! first write, then checks a sample of resources (gapless log, read model = log).
//!
//! ```text
//! cargo run --release --example crash_recovery -- --events 10000000 [--resources 10000]
//!     [--dir PATH] [--cache-mb 256]
//! ```
//! A figure for docs/performance.md, never a timed test.

use clap::Parser;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command as Process, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use warden_core::domain::ClientSchema;
use warden_core::domain::{ClientResource, replay};
use warden_core::store::{EventStore, ReadModelStore};
use warden_store_embedded::{DEFAULT_CACHE_MB, EmbeddedOptions, EmbeddedStore};

use warden_testkit::fill;

#[derive(Parser, Debug)]
#[command(about = "Warden: reopen time of an embedded store after kill -9")]
struct Args {
    /// Events to write before the kill.
    #[arg(long, default_value_t = 1_000_000)]
    events: u64,
    /// Resources they are spread over.
    #[arg(long, default_value_t = 10_000)]
    resources: usize,
    /// Where the data directory goes (default: under the cargo target directory, on real disk).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// The store's memory budget in MiB.
    #[arg(long, default_value_t = DEFAULT_CACHE_MB)]
    cache_mb: u64,
    /// Internal: run as the writing child on this directory.
    #[arg(long, hide = true)]
    child: Option<PathBuf>,
}

fn options(args: &Args) -> EmbeddedOptions {
    EmbeddedOptions {
        cache_mb: args.cache_mb,
        ..EmbeddedOptions::default()
    }
}

// Long on purpose: one straight script (fill in a child, kill it, reopen, measure, check), read
// top to bottom in the order the report prints.
fn main() {
    let args = Args::parse();
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    if let Some(dir) = &args.child {
        return rt.block_on(child(dir, &args));
    }
    let base = args.dir.clone().unwrap_or_else(|| {
        std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("target"))
    });
    std::fs::create_dir_all(&base).expect("create the directory");
    let temp = tempfile::tempdir_in(&base).expect("temporary data directory");
    let dir = temp.path().to_owned();

    let started = Instant::now();
    let mut child = Process::new(std::env::current_exe().expect("own path"))
        .args(["--events", &args.events.to_string()])
        .args(["--resources", &args.resources.to_string()])
        .args(["--cache-mb", &args.cache_mb.to_string()])
        .arg("--child")
        .arg(&dir)
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the writer");
    let lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    for line in lines.map_while(Result::ok) {
        eprintln!("  child: {line}");
        if line.starts_with("filled") {
            break;
        }
    }
    let fill = started.elapsed();
    // Let it go on writing for a random moment, then kill it mid-stream.
    let extra = Duration::from_millis(50 + rand::random::<u64>() % 500);
    std::thread::sleep(extra);
    child.kill().expect("SIGKILL");
    child.wait().expect("reap");
    let disk = fill::dir_bytes(&dir);

    rt.block_on(async {
        let t = Instant::now();
        let store = Arc::new(EmbeddedStore::open_with(&dir, options(&args)).expect("reopen"));
        let open = t.elapsed();
        let t = Instant::now();
        let ids = store.resource_ids().await.expect("resource ids");
        let list = t.elapsed();
        let t = Instant::now();
        let first = ids[0];
        let head = store.head(first).await.expect("head");
        let view = store.get(first).await.expect("view");
        let first_read = t.elapsed();
        let t = Instant::now();
        let mut state = store
            .load(first)
            .await
            .expect("load")
            .state()
            .expect("state");
        assert_eq!(state.version, head);
        fill::append_rounds(&store, std::slice::from_mut(&mut state), 1).await;
        let first_write = t.elapsed();
        assert_eq!(
            view.map(|v| v.version),
            Some(head),
            "the view is at the head"
        );

        let sample: Vec<_> = ids.iter().step_by((ids.len() / 100).max(1)).collect();
        let mut events = 0;
        for id in &sample {
            let log = store.events(**id, 0, usize::MAX).await.expect("log");
            let versions: Vec<u64> = log.iter().map(|e| e.version).collect();
            assert_eq!(
                versions,
                (1..=log.len() as u64).collect::<Vec<_>>(),
                "gap in {id}"
            );
            let state = replay(None, &log).expect("state");
            assert_eq!(
                store.get(**id).await.expect("view"),
                Some(ClientResource::from_server(&state)),
                "read model = log for {id}"
            );
            events += log.len();
        }
        let journal_after_kill = store.journal_bytes();
        // Then a graceful stop (the last handle dropped: the writer finishes, the store closes)
        // and a reopen, as on a deploy.
        let t = Instant::now();
        drop(store);
        let close = t.elapsed();
        let t = Instant::now();
        let store = Arc::new(EmbeddedStore::open_with(&dir, options(&args)).expect("reopen"));
        let graceful_open = t.elapsed();
        let graceful_journal = store.journal_bytes();
        println!(
            "filled {} events over {} resources in {:.1} s, killed {} ms later; {:.1} MB on disk \
             ({:.0} B/event), journal {:.1} MB",
            args.events,
            ids.len(),
            fill.as_secs_f64(),
            extra.as_millis(),
            disk as f64 / 1e6,
            disk as f64 / args.events.max(1) as f64,
            journal_after_kill as f64 / 1e6,
        );
        println!(
            "reopen after kill -9: open {:.0} ms, list {} resources {:.0} ms, first read {:.2} ms, \
             first write (one durable commit) {:.2} ms; sample of {} resources ({events} events) \
             gapless, read model = log",
            open.as_secs_f64() * 1e3,
            ids.len(),
            list.as_secs_f64() * 1e3,
            first_read.as_secs_f64() * 1e3,
            first_write.as_secs_f64() * 1e3,
            sample.len(),
        );
        println!(
            "graceful stop: close {:.0} ms; reopen {:.0} ms (journal {:.1} MB)",
            close.as_secs_f64() * 1e3,
            graceful_open.as_secs_f64() * 1e3,
            graceful_journal as f64 / 1e6,
        );
    });
}

/// The writer: fills the store, says so, and keeps writing until it is killed.
async fn child(dir: &std::path::Path, args: &Args) {
    let store = Arc::new(EmbeddedStore::open_with(dir, options(args)).expect("open"));
    let mut states = fill::create(&store, args.resources).await;
    let per_resource = args.events.div_ceil(args.resources as u64);
    let step = (per_resource / 10).max(1);
    let mut done = 0;
    while done < per_resource {
        let n = step.min(per_resource - done);
        fill::append_rounds(&store, &mut states, n).await;
        done += n;
        println!("{} events", done * args.resources as u64);
    }
    println!("filled");
    loop {
        fill::append_rounds(&store, &mut states, 1).await;
    }
}
