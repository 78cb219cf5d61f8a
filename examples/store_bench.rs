//! Commands per second and latency percentiles of the core (actors + store) on the embedded store
//! and on MongoDB, in one run, for comparison:
//!
//! ```sh
//! cargo run --release --example store_bench -- --mongodb-uri 'mongodb://127.0.0.1:27118/?directConnection=true'
//! ```
//!
//! Each run creates `--resources` resources, then `--clients` concurrent clients send `add 1`
//! commands to random resources until `--commands` have been answered.

use anyhow::Context;
use clap::Parser;
use rand::RngExt;
use std::sync::Arc;
use std::time::{Duration, Instant};
use warden::actor::CommandRequest;
use warden::domain::{
    AddResource, Command, CommandId, CreateResource, PlayerId, Principal, ResourceId,
    ResourceParams,
};
use warden::node::{Node, NodeConfig};
use warden::store::Backend;
use warden::store::mongo::{MongoConfig, MongoStore};

#[derive(Parser)]
struct Args {
    /// MongoDB to measure (a fresh database is used and dropped); without it only embedded runs.
    #[arg(long, env = "WARDEN_BENCH_MONGODB_URI")]
    mongodb_uri: Option<String>,
    #[arg(long, default_value_t = 100)]
    resources: usize,
    #[arg(long, default_value_t = 64)]
    clients: usize,
    #[arg(long, default_value_t = 20_000)]
    commands: usize,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let dir = tempfile::tempdir()?;
    let embedded = warden::store::open_from_config(dir.path(), None, Default::default()).await?;
    run("embedded", &embedded, &args).await?;
    if let Some(uri) = &args.mongodb_uri {
        let db = format!("warden_bench_{}", uuid::Uuid::now_v7().simple());
        let store = Arc::new(
            MongoStore::connect_to(uri, Some(&db), MongoConfig::default())
                .await
                .context("cannot reach MongoDB")?,
        );
        let backend = Backend {
            events: store.clone(),
            read: store.clone(),
            mongo: Some(store.clone()),
        };
        run("mongodb", &backend, &args).await?;
        store.database().drop().await?;
    }
    Ok(())
}

async fn run(name: &str, backend: &Backend, args: &Args) -> anyhow::Result<()> {
    let node = Arc::new(Node::start_on(backend, NodeConfig::default()));
    let service = Principal::service("bench");
    let mut ids: Vec<ResourceId> = Vec::new();
    for i in 0..args.resources {
        let reply = node
            .registry
            .execute(CommandRequest {
                command_id: CommandId::new(),
                principal: service.clone(),
                command: Command::Create(CreateResource {
                    resource_type: "gold".into(),
                    owner: Some(PlayerId::new(format!("p{i}"))),
                    params: Some(ResourceParams {
                        initial_amount: 0,
                        max_amount: u64::MAX / 2,
                        regen_milli: 0,
                    }),
                }),
            })
            .await?;
        ids.push(reply.resource_id);
    }
    let ids = Arc::new(ids);
    let per_client = args.commands / args.clients.max(1);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..args.clients {
        let node = node.clone();
        let ids = ids.clone();
        let service = service.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(per_client);
            for _ in 0..per_client {
                let id = ids[rand::rng().random_range(0..ids.len())];
                let t = Instant::now();
                node.registry
                    .execute(CommandRequest {
                        command_id: CommandId::new(),
                        principal: service.clone(),
                        command: Command::Add(AddResource {
                            resource_id: id,
                            amount: 1,
                            reason: "bench".into(),
                        }),
                    })
                    .await
                    .expect("add succeeds");
                latencies.push(t.elapsed());
            }
            latencies
        }));
    }
    let mut latencies: Vec<Duration> = Vec::new();
    for t in tasks {
        latencies.extend(t.await?);
    }
    let elapsed = started.elapsed();
    latencies.sort();
    let pct = |p: f64| latencies[((latencies.len() as f64 * p) as usize).min(latencies.len() - 1)];
    println!(
        "{name:<9} {} commands, {} clients, {} resources: {:>8.0} commands/s  p50 {:>7.2} ms  p99 {:>7.2} ms",
        latencies.len(),
        args.clients,
        args.resources,
        latencies.len() as f64 / elapsed.as_secs_f64(),
        pct(0.50).as_secs_f64() * 1e3,
        pct(0.99).as_secs_f64() * 1e3,
    );
    Arc::into_inner(node)
        .context("node still shared")?
        .shutdown()
        .await;
    Ok(())
}
