//! The `client-sim` binary: the seed scenario over the wire, and bot swarms with spectators.

use anyhow::Context;
use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
#[command(
    name = "client-sim",
    version,
    about = "Load-test a Warden server: the seed scenario, bot swarms and spectators"
)]
struct Cli {
    /// Base URL of the server.
    #[arg(long, global = true, default_value = "ws://127.0.0.1:7350")]
    url: String,
    /// The server's data directory, whose `dev-secret` signs the tokens client-sim mints.
    #[arg(
        long,
        global = true,
        env = "WARDEN_DATA_DIR",
        default_value = "./warden-data"
    )]
    data_dir: PathBuf,
    /// The server's token secret (instead of the data directory's development secret).
    #[arg(long, global = true, env = "WARDEN_SECRET", hide_env_values = true)]
    secret: Option<String>,
    #[command(subcommand)]
    command: Cmd,
}

// Parsed once per run.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum Cmd {
    /// The seed scenario as player123, step by step; exits non-zero if a step deviates.
    Scenario,
    /// N bots and M spectators for a while, then the report and the invariant check; exits
    /// non-zero on any violation.
    Swarm(SwarmArgs),
}

#[derive(clap::Args)]
struct SwarmArgs {
    /// Bots, each its own player identity and connection.
    #[arg(long, default_value_t = 100)]
    bots: usize,
    /// Spectators, each subscribed to many bots' resources and the guild's.
    #[arg(long, default_value_t = 10)]
    spectators: usize,
    /// How long bots send (the ramp-up included), e.g. 30s, 2m.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Open-loop mode: total commands per second over all bots, latency measured from each
    /// request's scheduled send time. Without it, closed-loop (send, await reply, next).
    #[arg(long)]
    rate: Option<f64>,
    /// Fraction of bots that also contend on the shared guild resources.
    #[arg(long, default_value_t = 0.1)]
    guild_fraction: f64,
    /// Number of shared guild resources.
    #[arg(long, default_value_t = 4)]
    guild_resources: usize,
    /// Bots start spread evenly over this.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    ramp_up: Duration,
    /// Catalogue type each bot creates for itself (use one without regeneration).
    #[arg(long, default_value = "wood")]
    own_type: String,
    /// Bots each spectator watches.
    #[arg(long, default_value_t = 10)]
    watch: usize,
    /// Resend a request unanswered for this long (same command id).
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    timeout: Duration,
    /// Least time between two sends of one closed-loop bot.
    #[arg(long, default_value = "0s", value_parser = humantime::parse_duration)]
    think: Duration,
    /// After a dropped connection, keep trying to reconnect this long (a server restart must
    /// fit in it); bots then resend unanswered commands with the same ids, spectators resume.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    reconnect_for: Duration,
    /// Print one JSON object on stdout instead of the text report (and no progress bar).
    #[arg(long)]
    json: bool,
    /// Write an SVG picture of the run to this file (none unless asked).
    #[arg(long)]
    plot: Option<PathBuf>,
    /// No picture (the default; kept so older command lines still parse).
    #[arg(long, hide = true)]
    no_plot: bool,
    /// The server's admin listener (e.g. http://127.0.0.1:7351): its `/metrics` is read before
    /// and after the run, and the server's CPU seconds, RSS, commits and appends per commit
    /// join the report.
    #[arg(long, env = "WARDEN_ADMIN_URL")]
    admin_url: Option<String>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let keys = client_sim::tokens::load_keys(cli.secret.as_deref(), &cli.data_dir)?;
    match cli.command {
        Cmd::Scenario => {
            let report = client_sim::scenario::run(&cli.url, &keys)
                .await
                .with_context(|| format!("scenario against {}", cli.url))?;
            print!("{}", report.to_text());
            anyhow::ensure!(report.ok(), "the scenario deviated from the seed");
            Ok(())
        }
        Cmd::Swarm(args) => swarm(cli.url, keys, args).await,
    }
}

/// The swarm command: run, add the server's figures, write the picture, print the report.
async fn swarm(
    url: String,
    keys: client_sim::tokens::TokenKeys,
    args: SwarmArgs,
) -> anyhow::Result<()> {
    raise_open_file_limit((args.bots + args.spectators + 64) as u64);
    let config = swarm_config(url, &args);
    let (bar, progress) = progress_bar(&args);
    let cancel = cancel_on_ctrl_c();
    let before = match &args.admin_url {
        Some(url) => Some(client_sim::server::sample(url).await?),
        None => None,
    };
    let started = std::time::Instant::now();
    let mut report = client_sim::swarm::run(config, keys, cancel, progress).await?;
    if let (Some(url), Some(before)) = (&args.admin_url, before) {
        match client_sim::server::sample(url).await {
            Ok(after) => {
                report.server = Some(client_sim::server::figures(
                    before,
                    after,
                    started.elapsed(),
                ))
            }
            Err(e) => eprintln!("warning: {e:#}"),
        }
    }
    bar.finish_and_clear();
    if let Some(path) = args.plot.as_ref().filter(|_| !args.no_plot) {
        match client_sim::plot::write_svg(&report, path) {
            Ok(()) => report.plot = Some(path.display().to_string()),
            Err(e) => eprintln!("warning: {e}"),
        }
    }
    if args.json {
        println!("{}", report.to_json());
    } else {
        print!("{}", report.to_text());
        if let Some(p) = &report.plot {
            println!("picture: {p}");
        }
    }
    anyhow::ensure!(
        report.ok(),
        "{} invariant violations",
        report.invariant_violations
    );
    Ok(())
}

/// One file descriptor per connection: raises the limit to `wanted`, warning when it cannot.
fn raise_open_file_limit(wanted: u64) {
    match rlimit::increase_nofile_limit(wanted) {
        Ok(limit) if limit < wanted => eprintln!(
            "warning: the open-file limit is {limit} and cannot be raised to {wanted}; \
             connections past it will fail (raise the hard limit: ulimit -Hn / limits.conf)"
        ),
        Ok(_) => {}
        Err(e) => eprintln!("warning: cannot raise the open-file limit: {e}"),
    }
}

fn swarm_config(url: String, args: &SwarmArgs) -> client_sim::swarm::SwarmConfig {
    client_sim::swarm::SwarmConfig {
        url,
        bots: args.bots,
        spectators: args.spectators,
        duration: args.duration,
        rate: args.rate,
        guild_fraction: args.guild_fraction.clamp(0.0, 1.0),
        guild_resources: args.guild_resources,
        ramp_up: args.ramp_up.min(args.duration),
        own_type: args.own_type.clone(),
        watch: args.watch,
        request_timeout: args.timeout,
        think: args.think,
        reconnect_for: args.reconnect_for,
        ..Default::default()
    }
}

/// The progress bar on stderr (hidden with `--json` or when stderr is not a terminal), and the
/// callback that updates it from the live counters.
fn progress_bar(
    args: &SwarmArgs,
) -> (
    ProgressBar,
    impl Fn(&client_sim::metrics::Recorder, Duration) + Send + 'static,
) {
    let bar = ProgressBar::with_draw_target(
        Some(args.duration.as_secs().max(1)),
        if args.json || !std::io::stderr().is_terminal() {
            ProgressDrawTarget::hidden()
        } else {
            ProgressDrawTarget::stderr()
        },
    );
    bar.set_style(
        ProgressStyle::with_template("{bar:30} {pos}/{len}s {msg}").expect("valid template"),
    );
    let ticker_bar = bar.clone();
    let duration = args.duration;
    let progress = move |rec: &client_sim::metrics::Recorder, elapsed: Duration| {
        let c = &rec.counters;
        let commands = c.commands.load(Ordering::Relaxed);
        ticker_bar.set_position(elapsed.as_secs().min(duration.as_secs()));
        ticker_bar.set_message(format!(
            "conns {}  commands {}  ({:.0}/s)  errors {}  updates {}",
            c.connected.load(Ordering::Relaxed),
            commands,
            commands as f64 / elapsed.as_secs_f64().max(0.001),
            c.errors.load(Ordering::Relaxed),
            c.updates.load(Ordering::Relaxed),
        ));
    };
    (bar, progress)
}

/// A token cancelled by the first Ctrl-C (bots stop, the check still runs); a second one quits.
fn cancel_on_ctrl_c() -> CancellationToken {
    let cancel = CancellationToken::new();
    let on_signal = cancel.clone();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            eprintln!("\nCtrl-C: stopping bots, then the final check (Ctrl-C again to quit now)");
            on_signal.cancel();
            if tokio::signal::ctrl_c().await.is_ok() {
                std::process::exit(130);
            }
        }
    });
    cancel
}
