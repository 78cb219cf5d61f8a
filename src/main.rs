//! The `warden` binary: run the seed demo (and, later, serve).

use anyhow::Context;
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::sync::Arc;
use warden::clock::ManualClock;
use warden::node::{Node, NodeConfig};
use warden::store::embedded::EmbeddedStore;

#[derive(Parser)]
#[command(
    name = "warden",
    version,
    about = "Server-authoritative game resource server"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Cmd>,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the seed scenario against the core on a temporary store and print each step.
    Demo {
        /// Keep the store here instead of a temporary directory.
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "warden=info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match cli.command {
        Some(Cmd::Demo { data_dir }) => demo(data_dir).await,
        None => {
            anyhow::bail!("no command given; try `warden demo` (see `warden --help`)")
        }
    }
}

async fn demo(data_dir: Option<PathBuf>) -> anyhow::Result<()> {
    let temp = tempfile::tempdir().context("cannot create a temporary directory")?;
    let dir = data_dir.unwrap_or_else(|| temp.path().to_owned());
    let store = Arc::new(EmbeddedStore::open(&dir)?);
    // A fixed instant: the printed amounts are exactly the seed's, with no regeneration between
    // steps.
    let clock = ManualClock::at(1_767_225_600_000);
    let config = NodeConfig {
        clock: Arc::new(clock),
        ..NodeConfig::default()
    };
    let node = Node::start(store.clone(), store.clone(), config);
    let report = warden::demo::run(&node).await?;
    println!("Warden seed scenario (store: {})", dir.display());
    println!("resource {}", report.resource_id);
    for (i, step) in report.steps.iter().enumerate() {
        let mark = if step.as_expected() {
            "as expected"
        } else {
            "UNEXPECTED"
        };
        println!(
            "{}. {:<46} {}  ({mark})",
            i + 1,
            step.title,
            step.describe()
        );
    }
    println!("\nread models of player123 (client schema):");
    println!(
        "{:<38} {:<10} {:<6} {:>6} {:>6} {:<6} version",
        "id", "owner", "type", "amount", "max", "locked"
    );
    for v in &report.read_models {
        println!(
            "{:<38} {:<10} {:<6} {:>6} {:>6} {:<6} {}",
            v.id.to_string(),
            v.owner.as_str(),
            v.resource_type,
            v.amount,
            v.max_amount,
            v.locked,
            v.version
        );
    }
    println!("\naudit trail:");
    for e in node
        .queries
        .history(report.resource_id, 0, usize::MAX)
        .await?
    {
        println!(
            "  v{:<3} {:<20} command {}",
            e.version,
            e.event.type_name(),
            e.command_id
        );
    }
    let all_ok = report.steps.iter().all(|s| s.as_expected());
    node.shutdown().await;
    drop(store);
    anyhow::ensure!(all_ok, "a step deviated from the seed scenario");
    Ok(())
}
