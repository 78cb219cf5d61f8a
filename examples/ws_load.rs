//! A quick local load against `warden serve`: commands per second and latency over WebSocket, or
//! memory per idle session.
//!
//! Each connection keeps `--in-flight` requests outstanding. When replies arrive together it
//! sends their successors together, in one write, as a pipelining client does.
//!
//! ```sh
//! # in-process server on a temporary store (rate limit off), 64 connections × 8 in flight:
//! cargo run --release --example ws_load -- load --conns 64 --in-flight 8 --seconds 10
//! # the cost of metrics: in-process servers with metrics on (admin listener, scraped every
//! # second) and off (`--admin-listen off`), runs in the order off, on, on, off:
//! cargo run --release --example ws_load -- load --conns 64 --in-flight 8 --admin both --rounds 3
//! # the protocol's ping as an echo baseline (same framing, no command):
//! cargo run --release --example ws_load -- load --conns 64 --in-flight 8 --op ping
//! # against a running server (tokens signed with that data directory's secret):
//! cargo run --release --example ws_load -- load --addr 127.0.0.1:7350 --data-dir ./warden-data
//! # one update fanned out to 10,000 subscriptions (200 connections × 50), in-process:
//! cargo run --release --example ws_load -- fanout --conns 200 --subs 50
//! # memory per idle session of a running server:
//! cargo run --release --example ws_load -- idle --conns 5000 --addr 127.0.0.1:7350 \
//!     --data-dir ./warden-data --server-pid $(pgrep -f 'warden serve')
//! ```

// The same allocator as the `warden` binary, so the in-process server is measured as shipped.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use anyhow::{Context, bail};
use clap::Parser;
use futures::{FutureExt, SinkExt, StreamExt};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use warden_core::domain::{CommandId, ResourceId, Role};
use warden_core::node::{Node, NodeConfig};
use warden_core::store::Backend;
use warden_net::NetConfig;
use warden_net::auth::TokenKeys;
use warden_protocol::{self, ClientMessage, ServerMessage};
use warden_store_embedded::EmbeddedStore;

/// WebSocket load against Warden: commands per second and latency, fan-out, or memory per idle
/// session.
#[derive(Parser)]
#[command(version)]
struct Args {
    /// `load`: commands (or `--op`) per second; `idle`: memory per idle session of a running
    /// server; `fanout`: one update to many subscriptions.
    #[arg(value_parser = ["load", "idle", "fanout"], default_value = "load")]
    mode: String,
    /// WebSocket connections.
    #[arg(long, default_value_t = 64)]
    conns: usize,
    /// Requests each connection keeps in flight.
    #[arg(long, default_value_t = 8)]
    in_flight: usize,
    /// Measured seconds.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// What each request is: `add` (add and allocate alternately, so the amount stays put),
    /// `get`, or the protocol's `ping` (an echo baseline).
    #[arg(long, value_parser = ["add", "get", "ping"], default_value = "add")]
    op: String,
    /// A running server to load (default: one in process, on a temporary store).
    #[arg(long)]
    addr: Option<SocketAddr>,
    /// With `--addr`: that server's data directory, whose secret signs the tokens.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// `idle`: the server's pid, to read its RSS.
    #[arg(long)]
    server_pid: Option<u32>,
    /// `fanout`: subscriptions per connection.
    #[arg(long, default_value_t = 50)]
    subs: usize,
    /// In-process server: metrics and admin listener `on`, `off`, or `both` (compared).
    #[arg(long, value_parser = ["on", "off", "both"], default_value = "on")]
    admin: String,
    /// With `--admin both`: how many off/on/on/off rounds.
    #[arg(long, default_value_t = 1)]
    rounds: usize,
}

fn rss_kb(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .context("no VmRSS")?;
    Ok(line
        .split_whitespace()
        .nth(1)
        .context("no VmRSS value")?
        .parse()?)
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect(addr: SocketAddr, token: &str) -> anyhow::Result<Ws> {
    // A 4 KiB read buffer, as client-sim's bots use: with tungstenite's 128 KiB default every
    // read zero-filled 128 KiB (`BytesMut::resize`), 4 % of a run's CPU spent by the load
    // generator, not the server.
    let config = WebSocketConfig::default().read_buffer_size(4 * 1024);
    let (mut ws, _) = tokio_tungstenite::connect_async_with_config(
        format!("ws://{addr}/v1?token={token}"),
        Some(config),
        false,
    )
    .await?;
    // welcome
    ws.next().await.context("no welcome")??;
    Ok(ws)
}

async fn recv(ws: &mut Ws) -> anyhow::Result<ServerMessage> {
    loop {
        match ws.next().await.context("closed")?? {
            Message::Binary(b) => return Ok(warden_protocol::decode(&b)?),
            Message::Close(f) => bail!("closed: {f:?}"),
            _ => continue,
        }
    }
}

/// The `req` of the next reply, which must be `applied`, `pong` or `resource`. Only its `type` and
/// `req` are read (the session's allocation-free envelope reader), not the whole message: a
/// full decode was a twentieth of a run's CPU, spent by the load generator, not the server.
async fn reply_req(ws: &mut Ws) -> anyhow::Result<u64> {
    loop {
        let bytes = match ws.next().await.context("closed")?? {
            Message::Binary(b) => b,
            Message::Close(f) => bail!("closed: {f:?}"),
            _ => continue,
        };
        let envelope = warden_net::inbound::inspect(&bytes)
            .map_err(|r| anyhow::anyhow!("malformed reply: {}", r.message))?;
        return match (envelope.kind, envelope.req) {
            (Some(Some("applied" | "pong" | "resource")), Some(req)) => Ok(req),
            _ => bail!(
                "unexpected {:?}",
                warden_protocol::decode::<ServerMessage>(&bytes)?
            ),
        };
    }
}

fn request(op: &str, req: u64, id: ResourceId) -> ClientMessage {
    match op {
        "ping" => ClientMessage::Ping(warden_protocol::Ping { req }),
        "get" => ClientMessage::Get(warden_protocol::Get {
            req,
            resource_id: id,
        }),
        // Alternate add and allocate so the amount stays put.
        _ if req.is_multiple_of(2) => ClientMessage::Add(warden_protocol::Add {
            req,
            command_id: CommandId::new(),
            resource_id: id,
            amount: 1,
            reason: String::new(),
        }),
        _ => ClientMessage::Allocate(warden_protocol::Allocate {
            req,
            command_id: CommandId::new(),
            resource_id: id,
            amount: 1,
            reason: String::new(),
        }),
    }
}

/// One connection: keeps `in_flight` requests outstanding until `until`; returns latencies (µs).
async fn drive(
    mut ws: Ws,
    op: String,
    in_flight: usize,
    warmup: Instant,
    until: Instant,
) -> anyhow::Result<Vec<u32>> {
    let create = ClientMessage::Create(warden_protocol::Create {
        name: None,
        req: 1,
        command_id: CommandId::new(),
        resource_type: "gold".into(),
        owner: None,
        params: None,
    });
    ws.send(Message::Binary(warden_protocol::encode(&create).into()))
        .await?;
    let id = match recv(&mut ws).await? {
        ServerMessage::Applied { resource_id, .. } => resource_id,
        other => bail!("create: {other:?}"),
    };
    let mut sent_at = std::collections::HashMap::new();
    let mut next = 2u64;
    for _ in 0..in_flight {
        sent_at.insert(next, Instant::now());
        ws.send(Message::Binary(
            warden_protocol::encode(&request(&op, next, id)).into(),
        ))
        .await?;
        next += 1;
    }
    let mut latencies = Vec::new();
    while !sent_at.is_empty() {
        // Wait for one reply, then take every reply already read without waiting; each frees a
        // slot for the next request, and the requests go out together in one write (as a client
        // that pipelines does), not one write each.
        let mut replies = vec![reply_req(&mut ws).await?];
        // Cancel-safe: a reply not yet complete stays in the stream for the next call.
        while let Some(req) = reply_req(&mut ws).now_or_never() {
            replies.push(req?);
        }
        let now = Instant::now();
        for req in replies {
            if let Some(at) = sent_at.remove(&req)
                && at >= warmup
            {
                latencies.push(now.duration_since(at).as_micros() as u32);
            }
            if now < until {
                sent_at.insert(next, Instant::now());
                ws.feed(Message::Binary(
                    warden_protocol::encode(&request(&op, next, id)).into(),
                ))
                .await?;
                next += 1;
            }
        }
        ws.flush().await?;
    }
    Ok(latencies)
}

/// A server in this process on a temporary embedded store, for the modes that need one.
struct LocalServer {
    addr: SocketAddr,
    keys: TokenKeys,
    node: Arc<Node>,
    shutdown: tokio_util::sync::CancellationToken,
    task: tokio::task::JoinHandle<Result<(), warden_net::NetError>>,
    /// With metrics on: the admin listener and a scraper reading `/metrics` every second.
    admin: Option<(
        tokio_util::sync::CancellationToken,
        tokio::task::JoinHandle<std::io::Result<()>>,
    )>,
    _dir: tempfile::TempDir,
}

impl LocalServer {
    async fn start(config: NetConfig) -> anyhow::Result<Self> {
        Self::start_with_admin(config, true).await
    }

    /// With `admin`: metrics on, an admin listener, and `/metrics` scraped every second (a
    /// busy Prometheus); without: metrics off, as `--admin-listen off` runs.
    async fn start_with_admin(config: NetConfig, admin: bool) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let store = Arc::new(EmbeddedStore::open(dir.path())?);
        let metrics = if admin {
            warden_core::metrics::Metrics::new()
        } else {
            warden_core::metrics::Metrics::off()
        };
        let node = Arc::new(Node::start(
            &Backend::local(store.clone(), store.clone()),
            NodeConfig {
                metrics,
                ..NodeConfig::default()
            },
        ));
        let keys = TokenKeys::from_secret(b"load");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let shutdown = tokio_util::sync::CancellationToken::new();
        let task = tokio::spawn(warden_net::serve(
            listener,
            node.clone(),
            keys.clone(),
            config,
            shutdown.clone(),
        ));
        let admin = if admin {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
            let url = format!("http://{}/metrics", listener.local_addr()?);
            let stop = tokio_util::sync::CancellationToken::new();
            let state = warden::admin::AdminState::new(node.clone(), shutdown.clone())
                .with_data_dir(dir.path());
            let task = tokio::spawn(warden::admin::run(listener, state, stop.clone()));
            let scraping = stop.clone();
            tokio::spawn(async move {
                let mut every = tokio::time::interval(Duration::from_secs(1));
                loop {
                    tokio::select! {
                        _ = scraping.cancelled() => break,
                        _ = every.tick() => {
                            if let Ok(r) = reqwest::get(&url).await {
                                let _ = r.text().await;
                            }
                        }
                    }
                }
            });
            Some((stop, task))
        } else {
            None
        };
        Ok(Self {
            addr,
            keys,
            node,
            shutdown,
            task,
            admin,
            _dir: dir,
        })
    }

    async fn stop(self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        self.task.await??;
        if let Some((stop, task)) = self.admin {
            stop.cancel();
            task.await??;
        }
        if let Some(node) = Arc::into_inner(self.node) {
            node.shutdown().await;
        }
        Ok(())
    }
}

async fn load(args: Args) -> anyhow::Result<()> {
    if args.addr.is_some() || args.admin != "both" {
        let admin = match args.admin.as_str() {
            "on" => true,
            "off" => false,
            other => bail!("--admin takes on, off or both, not {other}"),
        };
        load_once(&args, admin).await?;
        return Ok(());
    }
    // Off, on, on, off: a drift over the four runs (the machine warming up or getting busy)
    // weighs on both sides alike.
    let mut on = Vec::new();
    let mut off = Vec::new();
    for _ in 0..args.rounds.max(1) {
        for admin in [false, true, true, false] {
            let rate = load_once(&args, admin).await?;
            if admin { on.push(rate) } else { off.push(rate) }
        }
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        let n = v.len();
        if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        }
    };
    let runs = on.len();
    let (on_mean, off_mean) = (mean(&on), mean(&off));
    let (on_median, off_median) = (median(&mut on), median(&mut off));
    println!(
        "metrics on: mean {on_mean:.0} req/s, median {on_median:.0}; off: mean {off_mean:.0} req/s, \
         median {off_median:.0} ({runs} runs each): on is {:+.1} % (mean) / {:+.1} % (median) of off",
        100.0 * (on_mean - off_mean) / off_mean,
        100.0 * (on_median - off_median) / off_median,
    );
    Ok(())
}

/// One load run; returns requests per second.
async fn load_once(args: &Args, admin: bool) -> anyhow::Result<f64> {
    let (addr, keys, server) = match args.addr {
        Some(addr) => {
            let dir = args
                .data_dir
                .clone()
                .context("--addr needs --data-dir (for the token secret)")?;
            (addr, TokenKeys::load(&dir)?, None)
        }
        None => {
            let server = LocalServer::start_with_admin(
                NetConfig {
                    commands_per_second: 0,
                    ..NetConfig::default()
                },
                admin,
            )
            .await?;
            (server.addr, server.keys.clone(), Some(server))
        }
    };
    let mut conns = Vec::new();
    for i in 0..args.conns {
        conns.push(connect(addr, &keys.mint(&format!("load{i}"), Role::Player, 3600)).await?);
    }
    let start = Instant::now();
    let warmup = start + Duration::from_secs(1);
    let until = warmup + Duration::from_secs(args.seconds);
    let tasks: Vec<_> = conns
        .into_iter()
        .map(|ws| tokio::spawn(drive(ws, args.op.clone(), args.in_flight, warmup, until)))
        .collect();
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await??);
    }
    all.sort_unstable();
    let pct = |p: f64| {
        all.get(((all.len() as f64 * p) as usize).min(all.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0)
    };
    let rate = all.len() as f64 / args.seconds as f64;
    println!(
        "op={} conns={} in_flight={} seconds={} metrics={}: {} requests, {:.0} req/s, p50 {} µs, p99 {} µs, p99.9 {} µs",
        args.op,
        args.conns,
        args.in_flight,
        args.seconds,
        if server.is_none() {
            "server's"
        } else if admin {
            "on"
        } else {
            "off"
        },
        all.len(),
        rate,
        pct(0.50),
        pct(0.99),
        pct(0.999),
    );
    if let Some(server) = server {
        server.stop().await?;
    }
    Ok(rate)
}

async fn idle(args: Args) -> anyhow::Result<()> {
    let addr = args.addr.context("idle needs --addr of a running server")?;
    let dir = args.data_dir.clone().context("idle needs --data-dir")?;
    let pid = args.server_pid.context("idle needs --server-pid")?;
    let keys = TokenKeys::load(&dir)?;
    let token = keys.mint("idle", Role::Spectator, 3600);
    let before = rss_kb(pid)?;
    let mut conns = Vec::with_capacity(args.conns);
    for _ in 0..args.conns {
        conns.push(connect(addr, &token).await?);
    }
    // Let the server settle (allocator, lazily grown buffers).
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = rss_kb(pid)?;
    println!(
        "idle sessions: {} — server RSS {} KB → {} KB: {:.1} KB per idle session",
        args.conns,
        before,
        after,
        (after - before) as f64 / args.conns as f64
    );
    drop(conns);
    Ok(())
}

/// Times one update reaching `conns × subs` subscriptions of one resource (in-process server).
async fn fanout(args: Args) -> anyhow::Result<()> {
    let server = LocalServer::start(NetConfig {
        commands_per_second: 0,
        max_subscriptions: args.subs.max(1),
        ..NetConfig::default()
    })
    .await?;
    let (addr, keys) = (server.addr, server.keys.clone());
    let mut writer = connect(addr, &keys.mint("owner", Role::Player, 3600)).await?;
    let create = ClientMessage::Create(warden_protocol::Create {
        // Created, or found again on a server that ran this before: either serves.
        name: Some("wood:fanout".into()),
        req: 1,
        command_id: CommandId::new(),
        resource_type: "wood".into(),
        owner: None,
        params: None,
    });
    writer
        .send(Message::Binary(warden_protocol::encode(&create).into()))
        .await?;
    let id = match recv(&mut writer).await? {
        ServerMessage::Applied { resource_id, .. } => resource_id,
        other => bail!("create: {other:?}"),
    };
    let token = keys.mint("watcher", Role::Spectator, 3600);
    let mut watchers = Vec::new();
    for _ in 0..args.conns {
        let mut ws = connect(addr, &token).await?;
        for req in 0..args.subs as u64 {
            let sub = ClientMessage::Subscribe(warden_protocol::Subscribe {
                req,
                resource_id: Some(id),
                owner: None,
                from_version: None,
            });
            ws.send(Message::Binary(warden_protocol::encode(&sub).into()))
                .await?;
        }
        for _ in 0..args.subs {
            recv(&mut ws).await?;
        }
        watchers.push(ws);
    }
    let start = Instant::now();
    let add = ClientMessage::Add(warden_protocol::Add {
        req: 2,
        command_id: CommandId::new(),
        resource_id: id,
        amount: 1,
        reason: String::new(),
    });
    writer
        .send(Message::Binary(warden_protocol::encode(&add).into()))
        .await?;
    let subs = args.subs;
    let tasks: Vec<_> = watchers
        .into_iter()
        .map(|mut ws| {
            tokio::spawn(async move {
                for _ in 0..subs {
                    recv(&mut ws).await?;
                }
                anyhow::Ok(Instant::now())
            })
        })
        .collect();
    let mut last = start;
    for t in tasks {
        last = last.max(t.await??);
    }
    println!(
        "fanout: one update to {} subscriptions ({} connections × {}) delivered in {:.1} ms",
        args.conns * args.subs,
        args.conns,
        args.subs,
        last.duration_since(start).as_secs_f64() * 1000.0
    );
    server.stop().await
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    match args.mode.as_str() {
        "idle" => idle(args).await,
        "fanout" => fanout(args).await,
        _ => load(args).await,
    }
}
