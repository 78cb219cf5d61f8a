//! Commands per second and latency percentiles of the core (actors + store) on the embedded store
//! and on MongoDB, in one run, for comparison, with MongoDB round trips per command:
//!
//! ```sh
//! cargo run --release --example store_bench -- --mongodb-uri 'mongodb://127.0.0.1:27118/?directConnection=true' --rtt-ms 1
//! ```
//!
//! Each run creates `--resources` resources, then `--clients` concurrent clients send `add 1`
//! commands to random resources until `--commands` have been answered. With `--rtt-ms N` MongoDB
//! is reached through a loopback proxy that delays each direction by N/2 ms (the proxy of the
//! MongoDB tests), to show what distance to a replica set does; the round trip measured through
//! it is printed, since timers round sub-millisecond delays up.

use warden_testkit::mongo::proxy;

use anyhow::Context;
use clap::Parser;
use futures::{StreamExt, TryStreamExt};
use rand::RngExt;
use std::sync::Arc;
use std::time::{Duration, Instant};
use warden::backend::Opened;
use warden_core::actor::CommandRequest;
use warden_core::domain::{
    AddResource, Command, CommandId, CreateResource, PlayerId, Principal, ResourceId,
    ResourceParams,
};
use warden_core::node::{Node, NodeConfig};
use warden_store_mongo::{MongoConfig, MongoStore};

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
    /// Round-trip time added between Warden and MongoDB, in milliseconds (0: direct).
    #[arg(long, default_value_t = 0.0)]
    rtt_ms: f64,
    /// Only measure MongoDB.
    #[arg(long)]
    skip_embedded: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let dir = tempfile::tempdir()?;
    if !args.skip_embedded {
        let embedded =
            warden::backend::open(dir.path(), None, Default::default(), Default::default()).await?;
        run("embedded", &embedded, &args).await?;
    }
    if let Some(uri) = &args.mongodb_uri {
        let rtt = Duration::from_secs_f64(args.rtt_ms.max(0.0) / 1e3);
        let proxy = proxy::Proxy::start(proxy::upstream_of(uri), rtt).await;
        let uri = if rtt.is_zero() {
            uri.clone()
        } else {
            proxy.uri(uri)
        };
        let db = format!("warden_bench_{}", uuid::Uuid::now_v7().simple());
        let store = Arc::new(
            MongoStore::connect_to(&uri, Some(&db), MongoConfig::default())
                .await
                .context("cannot reach MongoDB")?,
        );
        // The round trip as the node sees it: a `ping`, median of 20.
        let mut pings = Vec::new();
        for _ in 0..20 {
            let t = Instant::now();
            store
                .database()
                .run_command(mongodb::bson::doc! { "ping": 1 })
                .await?;
            pings.push(t.elapsed());
        }
        pings.sort();
        println!(
            "mongodb: --rtt-ms {} (ping through it: {:.2} ms), snapshots and views by {}",
            args.rtt_ms,
            pings[pings.len() / 2].as_secs_f64() * 1e3,
            if store.uses_bulk_write() {
                "one bulkWrite"
            } else {
                "one update per collection"
            }
        );
        let opened = Opened {
            backend: store.backend(),
            mongo: Some(store.clone()),
        };
        run("mongodb", &opened, &args).await?;
        store.database().drop().await?;
    }
    Ok(())
}

// Long on purpose: one measured run (creates, timed commands, latency, round trips) in the order
// it prints.
async fn run(name: &str, opened: &Opened, args: &Args) -> anyhow::Result<()> {
    let node = Arc::new(Node::start(&opened.backend, NodeConfig::default()));
    let service = Principal::service("bench");
    let creates = (0..args.resources).map(|i| {
        let node = node.clone();
        let service = service.clone();
        async move {
            node.registry()
                .execute(CommandRequest {
                    command_id: CommandId::new(),
                    principal: service,
                    command: Command::Create(CreateResource {
                        name: None,
                        resource_type: "gold".into(),
                        owner: Some(PlayerId::new(format!("p{i}"))),
                        params: Some(ResourceParams {
                            initial_amount: 0,
                            max_amount: u64::MAX / 2,
                            regen_milli: 0,
                        }),
                    }),
                })
                .await
                .map(|reply| reply.resource_id)
        }
    });
    let ids: Vec<ResourceId> = futures::stream::iter(creates)
        .buffer_unordered(args.clients.max(1))
        .try_collect()
        .await?;
    let ids = Arc::new(ids);
    let trips_before = opened.mongo.as_ref().map(|m| m.round_trips());
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
                node.registry()
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
    if let (Some(mongo), Some(before)) = (&opened.mongo, trips_before) {
        let trips = mongo.round_trips().since(&before);
        let n = latencies.len() as f64;
        println!(
            "          MongoDB round trips: {:.4} per command ({} in all: {} insert, {} bulkWrite, {} update, {} find, {} aggregate, {} other)",
            trips.total() as f64 / n,
            trips.total(),
            trips.inserts,
            trips.bulk_writes,
            trips.updates,
            trips.finds,
            trips.aggregates,
            trips.deletes + trips.commands,
        );
    }
    Arc::into_inner(node)
        .context("node still shared")?
        .shutdown()
        .await;
    Ok(())
}
