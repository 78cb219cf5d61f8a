//! The core benchmark: durable commands per second (and their latency) through one hot resource
//! actor, spread over many actors, and the pure `decide` + `apply` ceiling of one actor, on a real
//! [`EmbeddedStore`] (an fsync per group commit) in a temporary directory.
//!
//! ```text
//! cargo bench --bench core -- [--scenario hot|spread|decide|all] [--resources N] [--clients C]
//!                             [--seconds S] [--max-batch B] [--pipeline P] [--dir PATH]
//!                             [--preload-events N] [--cache-mb M]
//! ```
//!
//! `--preload-events N` fills each run's store with N events over its resources (appended
//! straight to the store, in chains of 256 per resource, as fast as the store takes them) before
//! the measured phase, to show how the rate holds up as the log grows. After each run the table
//! gives the process's RSS and the store's bytes on disk (and per event).
//!
//! `all` (the default) runs `decide`, `hot`, `spread` over 1,000 and 10,000 resources, then `hot`
//! and `spread` again with group commit and pipelining off (`--max-batch 1 --pipeline 1`: one
//! fsync per command) to show what they buy. The `store` column reads `g<max batch>/p<pipeline>`.
//! Figures come from here, never from timed tests.

use clap::Parser;
use hdrhistogram::Histogram;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use warden_core::actor::{ActorConfig, CommandRequest, Registry};
use warden_core::clock::SystemClock;
use warden_core::domain::{
    Catalogue, Command, CommandId, CreateResource, PlayerId, Principal, ResourceId, Timestamp,
    decide, decide_create, replay, stamp,
};
use warden_core::node::{Node, NodeConfig};
use warden_core::store::Backend;
use warden_core::store::EventStore;
use warden_store_embedded::{
    CommitStats, DEFAULT_CACHE_MB, EmbeddedOptions, EmbeddedStore, MAX_BATCH,
};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use fill::{PARAMS, command_for};
use warden_testkit::fill;

#[derive(Parser, Debug)]
#[command(about = "Warden core benchmark: durable commands/s on the embedded store")]
struct Args {
    /// hot | spread | decide | all
    #[arg(long, default_value = "all")]
    scenario: String,
    /// Resources for `spread` (default: one run with 1,000 and one with 10,000).
    #[arg(long)]
    resources: Option<usize>,
    /// Concurrent client tasks (default: 64 for `hot`, 1,000 for `spread`).
    #[arg(long)]
    clients: Option<usize>,
    /// Measured seconds per run.
    #[arg(long, default_value_t = 5.0)]
    seconds: f64,
    /// Group-commit batch limit (default: the store's; `1` turns group commit off). When given,
    /// `all` skips its comparison runs.
    #[arg(long)]
    max_batch: Option<usize>,
    /// Commands an actor decides together and commits in one append (default: the actor's).
    /// The comparison runs of `all` use 1.
    #[arg(long)]
    pipeline: Option<usize>,
    /// Where the temporary stores go (default: the cargo target directory, on real disk; /tmp may
    /// be a tmpfs where fsync costs nothing).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Events to append to each run's store before measuring (spread over its resources).
    #[arg(long, default_value_t = 0)]
    preload_events: u64,
    /// The embedded store's memory budget in MiB.
    #[arg(long, default_value_t = DEFAULT_CACHE_MB)]
    cache_mb: u64,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

/// One line of the result table.
struct Row {
    scenario: String,
    store: String,
    resources: usize,
    clients: usize,
    commands: u64,
    errors: u64,
    elapsed: Duration,
    /// Latency per command in nanoseconds.
    latency: Histogram<u64>,
    /// Group commits during the measured phase (`None` when there is no store).
    stats: Option<CommitStats>,
    /// Process CPU time (all threads) during the measured phase, if the OS tells us.
    cpu: Option<Duration>,
    /// Events in the store at the end, resident memory of the process and the store's bytes on
    /// disk (`None` when there is no store).
    footprint: Option<Footprint>,
}

#[derive(Clone, Copy)]
struct Footprint {
    events: u64,
    rss_bytes: u64,
    disk_bytes: u64,
}

impl Row {
    fn header() -> String {
        format!(
            "{:<8} {:<9} {:>9} {:>7} {:>10} {:>11} {:>9} {:>9} {:>9} {:>9} {:>7} {:>8} {:>6} {:>10} {:>7} {:>8} {:>7} {:>8} {:>6}",
            "scenario",
            "store",
            "resources",
            "clients",
            "commands",
            "commands/s",
            "p50 µs",
            "p99 µs",
            "max µs",
            "commits",
            "batch",
            "cpu µs/c",
            "errors",
            "events",
            "rss MB",
            "disk MB",
            "B/event",
            "max c ms",
            "slow c"
        )
    }

    fn line(&self) -> String {
        let us = |q: f64| self.latency.value_at_quantile(q) as f64 / 1_000.0;
        let (commits, batch) = match self.stats {
            Some(s) if s.commits > 0 => (
                s.commits.to_string(),
                format!("{:.1}", s.appends as f64 / s.commits as f64),
            ),
            Some(_) => ("0".into(), "-".into()),
            None => ("-".into(), "-".into()),
        };
        format!(
            "{:<8} {:<9} {:>9} {:>7} {:>10} {:>11.0} {:>9.1} {:>9.1} {:>9.1} {:>9} {:>7} {:>8} {:>6} {:>10} {:>7} {:>8} {:>7} {:>8} {:>6}",
            self.scenario,
            self.store,
            self.resources,
            self.clients,
            self.commands,
            self.commands as f64 / self.elapsed.as_secs_f64(),
            us(0.5),
            us(0.99),
            self.latency.max() as f64 / 1_000.0,
            commits,
            batch,
            self.cpu.map_or("-".into(), |cpu| format!(
                "{:.2}",
                cpu.as_secs_f64() * 1e6 / self.commands.max(1) as f64
            )),
            self.errors,
            self.footprint.map_or("-".into(), |f| f.events.to_string()),
            self.footprint
                .map_or("-".into(), |f| format!("{:.0}", f.rss_bytes as f64 / 1e6)),
            self.footprint
                .map_or("-".into(), |f| format!("{:.1}", f.disk_bytes as f64 / 1e6)),
            self.footprint.map_or("-".into(), |f| format!(
                "{:.0}",
                f.disk_bytes as f64 / f.events.max(1) as f64
            )),
            self.stats.map_or("-".into(), |s| format!(
                "{:.1}",
                s.max_commit_micros as f64 / 1e3
            )),
            self.stats
                .map_or("-".into(), |s| s.slow_commits.to_string()),
        )
    }
}

/// CPU time this process has used so far (user + system, all threads), from `/proc/self/stat`.
/// Other processes share the machine, so CPU per command is steadier than commands per second.
fn process_cpu() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which is in parentheses and may hold spaces).
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    // The kernel reports in USER_HZ, which is 100 on every Linux we run on.
    Some(Duration::from_millis(ticks * 10))
}

/// Resident memory of this process, from `/proc/self/status`.
fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            let line = s.lines().find(|l| l.starts_with("VmRSS:"))?;
            line.split_whitespace().nth(1)?.parse::<u64>().ok()
        })
        .map_or(0, |kb| kb * 1024)
}

fn histogram() -> Histogram<u64> {
    // 1 ns to 100 s at three significant digits.
    Histogram::new_with_bounds(1, 100_000_000_000, 3).expect("valid histogram bounds")
}

// Long on purpose: parses the flags and runs each scenario in the order the report prints it.
fn main() {
    let args = Args::parse();
    // Logs only when asked (`RUST_LOG=warden=warn,fjall=debug` shows slow commits and the
    // engine's write stalls); the table goes to stdout either way.
    if std::env::var_os("RUST_LOG").is_some() {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .init();
    }
    let seconds = Duration::from_secs_f64(args.seconds.max(0.1));
    let dir = args.dir.clone().unwrap_or_else(|| {
        std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("target"))
    });
    std::fs::create_dir_all(&dir).expect("create the benchmark directory");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");

    let batch = args.max_batch.unwrap_or(MAX_BATCH);
    let pipeline = args.pipeline.unwrap_or(ActorConfig::default().pipeline);
    let hot_clients = args.clients.unwrap_or(64);
    let spread_clients = args.clients.unwrap_or(1_000);
    let spread_sizes = match args.resources {
        Some(n) => vec![n.max(1)],
        None => vec![1_000, 10_000],
    };
    // scenario, resources, clients, store batch limit, actor pipeline
    let mut plan: Vec<(&str, usize, usize, usize, usize)> = Vec::new();
    let all = args.scenario == "all";
    if all || args.scenario == "decide" {
        plan.push(("decide", 1, 1, 0, 0));
    }
    if all || args.scenario == "hot" {
        plan.push(("hot", 1, hot_clients, batch, pipeline));
    }
    if all || args.scenario == "spread" {
        for &n in &spread_sizes {
            plan.push(("spread", n, spread_clients, batch, pipeline));
        }
    }
    if all && args.max_batch.is_none() && args.pipeline.is_none() {
        // No group commit and no pipelining: one fsync per command.
        plan.push(("hot", 1, hot_clients, 1, 1));
        plan.push(("spread", spread_sizes[0], spread_clients, 1, 1));
    }
    if plan.is_empty() {
        eprintln!(
            "unknown scenario {:?}: use hot, spread, decide or all",
            args.scenario
        );
        std::process::exit(2);
    }

    println!(
        "warden core benchmark: {} cores, {:.1} s per run, stores under {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        seconds.as_secs_f64(),
        dir.display()
    );
    println!("{}", Row::header());
    for (scenario, n, c, max_batch, pipeline) in plan {
        let row = match scenario {
            "decide" => decide_loop(seconds),
            _ => runtime.block_on(durable_run(
                scenario,
                &dir,
                n,
                c,
                EmbeddedOptions {
                    max_batch,
                    cache_mb: args.cache_mb,
                    ..EmbeddedOptions::default()
                },
                pipeline,
                seconds,
                args.preload_events,
            )),
        };
        println!("{}", row.line());
    }
}

/// The ceiling of one actor: `decide`, `stamp` and `apply` on one resource, no I/O, no tasks.
fn decide_loop(seconds: Duration) -> Row {
    let principal = Principal::service("bench");
    let now = Timestamp(1_767_225_600_000);
    let id = ResourceId::new();
    let create = CreateResource {
        name: None,
        resource_type: "bench".into(),
        owner: None,
        params: Some(PARAMS),
    };
    let created = decide_create(&Catalogue::default(), &principal, &create, now).expect("create");
    let mut state = replay(
        None,
        &stamp(
            id,
            0,
            CommandId::new(),
            warden_core::domain::Role::Player,
            now,
            vec![created],
        ),
    )
    .expect("created");
    let mut latency = histogram();
    let mut commands = 0u64;
    let cpu_before = process_cpu();
    let started = Instant::now();
    let deadline = started + seconds;
    'run: loop {
        for _ in 0..1024 {
            let command = command_for(id, commands);
            let command_id = CommandId::new();
            let t = Instant::now();
            let events = decide(&state, &principal, &command, now).expect("never refused");
            let events = stamp(
                id,
                state.version,
                command_id,
                warden_core::domain::Role::Player,
                now,
                events,
            );
            state = replay(Some(state), &events).expect("exists");
            latency.saturating_record(t.elapsed().as_nanos() as u64);
            commands += 1;
        }
        if Instant::now() >= deadline {
            break 'run;
        }
    }
    Row {
        scenario: "decide".into(),
        store: "none".into(),
        resources: 1,
        clients: 1,
        commands,
        errors: 0,
        elapsed: started.elapsed(),
        latency,
        stats: None,
        cpu: process_cpu()
            .zip(cpu_before)
            .map(|(a, b)| a.saturating_sub(b)),
        footprint: None,
    }
}

/// `clients` tasks sending commands through `Registry::execute` to random ones of `resources`
/// fresh resources, on a new durable store (holding `preload` events first), for `seconds`.
// Long on purpose: one measured run (open, optional preload, clients, timing, CPU, RSS, disk),
// kept in one place so what is inside the timed window is visible at a glance.
#[allow(clippy::too_many_arguments)]
async fn durable_run(
    scenario: &str,
    dir: &std::path::Path,
    resources: usize,
    clients: usize,
    options: EmbeddedOptions,
    pipeline: usize,
    seconds: Duration,
    preload: u64,
) -> Row {
    let temp = tempfile::tempdir_in(dir).expect("temporary store directory");
    let max_batch = options.max_batch;
    let store = Arc::new(EmbeddedStore::open_with(temp.path(), options).expect("open store"));
    let config = NodeConfig {
        catalogue: Arc::new(Catalogue::default()),
        clock: Arc::new(SystemClock),
        actors: ActorConfig {
            pipeline,
            ..ActorConfig::default()
        },
        ..NodeConfig::default()
    };
    // Create the resources (and preload their logs) first, with actors that then stop, so the
    // measured actors start from what the store holds.
    let ids = {
        let node = Node::start(
            &Backend::local(store.clone(), store.clone()),
            config.clone(),
        );
        let ids = create_resources(node.registry(), resources, clients).await;
        node.shutdown().await;
        Arc::new(ids)
    };
    if preload > 0 {
        let started = Instant::now();
        let preloaded = preload_events(&store, &ids, preload).await;
        eprintln!(
            "preloaded {preloaded} events in {:.1} s",
            started.elapsed().as_secs_f64()
        );
    }
    let node = Node::start(&Backend::local(store.clone(), store.clone()), config);
    let registry = node.registry().clone();
    let before = store.commit_stats();
    let cpu_before = process_cpu();
    let started = Instant::now();
    let deadline = started + seconds;
    let tasks: Vec<_> = (0..clients)
        .map(|client| {
            let registry = registry.clone();
            let ids = ids.clone();
            tokio::spawn(client_loop(registry, ids, client as u64, deadline))
        })
        .collect();
    let mut latency = histogram();
    let (mut commands, mut errors) = (0, 0);
    let mut samples = Vec::with_capacity(clients);
    for task in tasks {
        let (s, ok, failed) = task.await.expect("client task");
        samples.push(s);
        commands += ok;
        errors += failed;
    }
    let elapsed = started.elapsed();
    let cpu = process_cpu()
        .zip(cpu_before)
        .map(|(a, b)| a.saturating_sub(b));
    let after = store.commit_stats();
    for ns in samples.into_iter().flatten() {
        latency.saturating_record(ns);
    }
    node.shutdown().await;
    drop(registry);
    let events = resources as u64 + preload + after.appends - before.appends;
    let footprint = Footprint {
        events,
        rss_bytes: rss_bytes(),
        disk_bytes: fill::dir_bytes(temp.path()),
    };
    Row {
        scenario: scenario.into(),
        store: format!("g{max_batch}/p{pipeline}"),
        resources,
        clients,
        commands,
        errors,
        elapsed,
        latency,
        stats: Some(CommitStats {
            commits: after.commits - before.commits,
            appends: after.appends - before.appends,
            commit_micros: after.commit_micros - before.commit_micros,
            max_commit_micros: after.max_commit_micros,
            slow_commits: after.slow_commits - before.slow_commits,
        }),
        cpu,
        footprint: Some(footprint),
    }
}

/// Appends `total` events spread evenly over `ids`, straight to the store. Returns how many.
async fn preload_events(store: &Arc<EmbeddedStore>, ids: &[ResourceId], total: u64) -> u64 {
    let mut states = Vec::with_capacity(ids.len());
    for id in ids {
        let loaded = store.load(*id).await.expect("load").state();
        states.push(loaded.expect("created"));
    }
    fill::append_rounds(store, &mut states, total.div_ceil(ids.len() as u64)).await
}

/// Creates `n` resources through the registry, `clients` at a time; returns their ids.
async fn create_resources(registry: &Registry, n: usize, clients: usize) -> Vec<ResourceId> {
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let workers: Vec<_> = (0..clients.clamp(1, n))
        .map(|_| {
            let registry = registry.clone();
            let next = next.clone();
            tokio::spawn(async move {
                let mut ids = Vec::new();
                while next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < n {
                    let request = CommandRequest {
                        command_id: CommandId::new(),
                        principal: Principal::service("bench"),
                        command: Command::Create(CreateResource {
                            // One owner, many wallets: each under a name of its own.
                            name: Some(format!("bench:{}", CommandId::new())),
                            resource_type: "bench".into(),
                            owner: Some(PlayerId::new("bench-owner")),
                            params: Some(PARAMS),
                        }),
                    };
                    let reply = registry.execute(request).await.expect("create a resource");
                    ids.push(reply.resource_id);
                }
                ids
            })
        })
        .collect();
    let mut ids = Vec::with_capacity(n);
    for w in workers {
        ids.extend(w.await.expect("create task"));
    }
    ids
}

/// One client: until `deadline`, pick a resource at random and wait for its command's outcome.
async fn client_loop(
    registry: Registry,
    ids: Arc<Vec<ResourceId>>,
    seed: u64,
    deadline: Instant,
) -> (Vec<u64>, u64, u64) {
    // Latencies in nanoseconds; a plain vector, since a histogram per client costs a large
    // zeroed allocation each and 1,000 clients would spend the run's start paging them in.
    let mut latency = Vec::with_capacity(4096);
    let (mut ok, mut failed) = (0u64, 0u64);
    let mut rng = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let principal = Principal::service("bench");
    let mut i = seed;
    while Instant::now() < deadline {
        // xorshift64: a uniform enough pick without a shared generator.
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let id = ids[(rng % ids.len() as u64) as usize];
        let request = CommandRequest {
            command_id: CommandId::new(),
            principal: principal.clone(),
            command: command_for(id, i),
        };
        i += 1;
        let t = Instant::now();
        let outcome = registry.execute(request).await;
        latency.push(t.elapsed().as_nanos() as u64);
        match outcome {
            Ok(_) => ok += 1,
            Err(e) => {
                failed += 1;
                if failed == 1 {
                    eprintln!("client {seed}: {e}");
                }
            }
        }
    }
    (latency, ok, failed)
}
