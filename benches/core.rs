//! The core benchmark: durable commands per second (and their latency) through one hot resource
//! actor, spread over many actors, and the pure `decide` + `apply` ceiling of one actor, on a real
//! [`EmbeddedStore`] (an fsync per group commit) in a temporary directory.
//!
//! ```text
//! cargo bench --bench core -- [--scenario hot|spread|decide|all] [--resources N] [--clients C]
//!                             [--seconds S] [--max-batch B] [--pipeline P] [--dir PATH]
//! ```
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
use warden::actor::{ActorConfig, CommandRequest, Registry};
use warden::clock::SystemClock;
use warden::domain::{
    AddResource, AllocateResource, Catalogue, Command, CommandId, CreateResource, PlayerId,
    Principal, ResourceId, ResourceParams, Timestamp, decide, decide_create, replay, stamp,
};
use warden::node::{Node, NodeConfig};
use warden::store::embedded::{CommitStats, EmbeddedOptions, EmbeddedStore, MAX_BATCH};

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
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

/// Plenty to never run dry or overflow during a run: commands move amounts by one.
const PARAMS: ResourceParams = ResourceParams {
    initial_amount: 1 << 40,
    max_amount: 1 << 41,
    regen_milli: 0,
};

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
}

impl Row {
    fn header() -> String {
        format!(
            "{:<8} {:<9} {:>9} {:>7} {:>10} {:>11} {:>9} {:>9} {:>9} {:>9} {:>7} {:>8} {:>6}",
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
            "errors"
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
            "{:<8} {:<9} {:>9} {:>7} {:>10} {:>11.0} {:>9.1} {:>9.1} {:>9.1} {:>9} {:>7} {:>8} {:>6}",
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
            self.errors
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

fn histogram() -> Histogram<u64> {
    // 1 ns to 100 s at three significant digits.
    Histogram::new_with_bounds(1, 100_000_000_000, 3).expect("valid histogram bounds")
}

fn main() {
    let args = Args::parse();
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
                scenario, &dir, n, c, max_batch, pipeline, seconds,
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
        resource_type: "bench".into(),
        owner: None,
        params: Some(PARAMS),
    };
    let created = decide_create(&Catalogue::default(), &principal, &create, now).expect("create");
    let mut state =
        replay(None, &stamp(id, 0, CommandId::new(), now, vec![created])).expect("created");
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
            let events = stamp(id, state.version, command_id, now, events);
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
    }
}

/// Alternates add and allocate of one unit, so a resource never runs dry or fills up.
fn command_for(id: ResourceId, i: u64) -> Command {
    if i % 2 == 0 {
        Command::Add(AddResource {
            resource_id: id,
            amount: 1,
            reason: String::new(),
        })
    } else {
        Command::Allocate(AllocateResource {
            resource_id: id,
            amount: 1,
            reason: String::new(),
        })
    }
}

/// `clients` tasks sending commands through `Registry::execute` to random ones of `resources`
/// fresh resources, on a new durable store, for `seconds`.
async fn durable_run(
    scenario: &str,
    dir: &std::path::Path,
    resources: usize,
    clients: usize,
    max_batch: usize,
    pipeline: usize,
    seconds: Duration,
) -> Row {
    let temp = tempfile::tempdir_in(dir).expect("temporary store directory");
    let store = Arc::new(
        EmbeddedStore::open_with(temp.path(), EmbeddedOptions { max_batch }).expect("open store"),
    );
    let config = NodeConfig {
        catalogue: Arc::new(Catalogue::default()),
        clock: Arc::new(SystemClock),
        actors: ActorConfig {
            pipeline,
            ..ActorConfig::default()
        },
        ..NodeConfig::default()
    };
    let node = Node::start(store.clone(), store.clone(), config);
    let registry = node.registry.clone();

    let ids = Arc::new(create_resources(&registry, resources, clients).await);
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
        }),
        cpu,
    }
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
