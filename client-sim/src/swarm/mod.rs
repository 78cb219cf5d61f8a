//! The swarm: N bots and M spectators against one server, then the final audit and the
//! invariant check.
//!
//! Order of a run: a service connection creates the shared guild resources (custom parameters,
//! no regeneration, owned by [`GUILD_OWNER`]); bots start spread over the ramp-up, each creating
//! its own resource and then sending its mix; once every bot has its resource, spectators
//! subscribe; at the end of the duration (or on Ctrl-C) bots finish what is in flight and unlock
//! what they hold; the audit reads every resource's final state and history; spectators get a
//! moment to receive the last updates; [`check`](crate::check::check) gives the verdict.
//!
//! - [`bot`]: one bot's connection and command mix.
//! - [`spectator`]: one spectator's subscriptions and gap/repeat tracking.
//! - [`audit`]: the final read of state and history.

pub mod audit;
pub mod bot;
pub mod spectator;

use crate::check::{self, Entry, Ledger, Op, Outcome, SubscriberLog};
pub use crate::config::SwarmConfig;
use crate::metrics::Recorder;
use crate::report::SwarmReport;
use crate::tokens::TokenKeys;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use thiserror::Error;
use tokio::sync::Notify;
use tokio::task::{JoinHandle, JoinSet};
use tokio_util::sync::CancellationToken;
use warden_client::{Client, ClientError, Command};
use warden_protocol::{PlayerId, ResourceId, ResourceParams, Role};

/// Owner of the shared guild resources.
pub const GUILD_OWNER: &str = "guild-bank";
/// Identity of the service that creates them.
pub const GUILD_SERVICE: &str = "client-sim-guild-service";
/// How long spectators get to receive the last updates after the audit.
const CATCH_UP: Duration = Duration::from_secs(15);

#[derive(Debug, Error)]
pub enum SwarmError {
    #[error("the guild service could not connect: {0}")]
    Service(#[source] ClientError),
    #[error("creating a guild resource failed: {0}")]
    Guild(String),
    #[error("the final audit failed: {0}")]
    Audit(#[from] audit::AuditError),
}

/// A request that got no answer.
#[derive(Debug)]
pub struct TimedOut;

/// What every bot and spectator of a swarm reads: the run's settings, the token keys, the
/// recorder, the stop signal and the guild resources.
#[derive(Debug)]
pub struct SwarmEnv {
    pub config: SwarmConfig,
    pub keys: TokenKeys,
    pub rec: Arc<Recorder>,
    /// Bots stop sending new work when this fires.
    pub stop: CancellationToken,
    /// The guild resources.
    pub guild: Vec<ResourceId>,
    /// This run's label: each bot's own wallet is `<own type>:<run>`, new in every run (bots'
    /// player ids repeat from run to run; their wallets must not).
    pub run: String,
    /// Bots that are done setting up (or gave up).
    ready: AtomicUsize,
    all_ready: Notify,
}

impl SwarmEnv {
    fn bot_ready(&self) {
        if self.ready.fetch_add(1, Ordering::AcqRel) + 1 >= self.config.bots {
            self.all_ready.notify_waiters();
        }
    }
}

/// Runs a swarm until its duration ends or `cancel` fires, then audits and checks.
/// `progress` is called about four times a second with the live counters.
pub async fn run(
    config: SwarmConfig,
    keys: TokenKeys,
    cancel: CancellationToken,
    progress: impl Fn(&Recorder, Duration) + Send + 'static,
) -> Result<SwarmReport, SwarmError> {
    let start = Instant::now();
    let rec = Arc::new(Recorder::new(start));
    let mut ledger = Ledger::default();
    let guild = create_guild(&config, &keys, &mut ledger).await?;

    let stop = cancel.child_token();
    let shared = Arc::new(SwarmEnv {
        config: config.clone(),
        keys: keys.clone(),
        rec: rec.clone(),
        stop: stop.clone(),
        guild,
        run: run_label(),
        ready: AtomicUsize::new(0),
        all_ready: Notify::new(),
    });
    let ticker = spawn_ticker(rec.clone(), stop.clone(), progress);
    let t0 = tokio::time::Instant::now();
    let mut bots = JoinSet::new();
    for i in 0..config.bots {
        let offset = config.ramp_up.mul_f64(i as f64 / config.bots.max(1) as f64);
        bots.spawn(bot::Bot::new(shared.clone(), i).run(t0 + offset));
    }
    let spectators_stop = CancellationToken::new();
    let (spectators, mut spectator_tasks) = start_spectators(&shared, &spectators_stop).await;

    tokio::select! {
        _ = tokio::time::sleep_until(t0 + config.duration) => {}
        _ = stop.cancelled() => {}
    }
    stop.cancel();
    let sending_time = start.elapsed();
    while let Some(res) = bots.join_next().await {
        if let Ok(r) = res {
            ledger.extend(r.entries);
        }
    }
    let _ = ticker.await;

    let server = audit::read_final(&config.url, &keys, &ledger.resources()).await?;
    let subscribers = {
        catch_up(&spectators, &server).await;
        spectators_stop.cancel();
        while spectator_tasks.join_next().await.is_some() {}
        seen_by(&spectators)
    };

    let verdict = check::check(&ledger, &server, &subscribers);
    Ok(SwarmReport::build(
        &config,
        &rec,
        sending_time,
        &verdict,
        subscribers.values().map(|m| m.len()).sum(),
    ))
}

/// The shared guild resources, created by a service connection (none if no bot joins the
/// guild); their creates go into the ledger.
async fn create_guild(
    config: &SwarmConfig,
    keys: &TokenKeys,
    ledger: &mut Ledger,
) -> Result<Vec<ResourceId>, SwarmError> {
    // Connected even when no guild is wanted: a server that cannot be reached fails the run here.
    let token = crate::tokens::mint(keys, GUILD_SERVICE, Role::Service);
    let service = Client::connect(&config.url, &token)
        .await
        .map_err(SwarmError::Service)?;
    let count = if config.guild_fraction > 0.0 {
        config.guild_resources
    } else {
        0
    };
    let mut guild = Vec::with_capacity(count);
    let run = run_label();
    for i in 0..count {
        let entry = create_guild_resource(&service, &format!("guild-gold:{run}-{i}")).await?;
        guild.push(entry.resource_id);
        ledger.push(entry);
    }
    service.close().await;
    Ok(guild)
}

/// Calls `progress` about four times a second until `stop`.
fn spawn_ticker(
    rec: Arc<Recorder>,
    stop: CancellationToken,
    progress: impl Fn(&Recorder, Duration) + Send + 'static,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_millis(250));
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = every.tick() => progress(&rec, rec.start.elapsed()),
            }
        }
    })
}

/// Starts the spectators once bots have their resources (or the ramp-up is long over), so the
/// `subscribed` reply holds every resource they will see change. Each watches `watch` bots, the
/// guild's owner first.
async fn start_spectators(
    shared: &Arc<SwarmEnv>,
    stop: &CancellationToken,
) -> (Vec<Arc<spectator::Spectator>>, JoinSet<()>) {
    let config = &shared.config;
    let spectators: Vec<Arc<spectator::Spectator>> = (0..config.spectators)
        .map(|i| Arc::new(spectator::Spectator::new(i)))
        .collect();
    let mut tasks = JoinSet::new();
    {
        let waiting = shared.all_ready.notified();
        if shared.ready.load(Ordering::Acquire) < config.bots {
            tokio::select! {
                _ = waiting => {}
                _ = tokio::time::sleep(config.ramp_up + Duration::from_secs(20)) => {}
                _ = shared.stop.cancelled() => {}
            }
        }
    }
    let owners: Vec<PlayerId> = (0..config.bots)
        .map(|i| PlayerId::new(format!("bot-{i:05}")))
        .collect();
    for (m, s) in spectators.iter().enumerate() {
        let mut watch: Vec<PlayerId> = if owners.is_empty() {
            Vec::new()
        } else {
            (0..config.watch.min(owners.len()))
                .map(|k| owners[(m * config.watch + k) % owners.len()].clone())
                .collect()
        };
        if !shared.guild.is_empty() {
            watch.insert(0, PlayerId::new(GUILD_OWNER));
        }
        tasks.spawn(s.clone().run(shared.clone(), watch, stop.clone()));
    }
    (spectators, tasks)
}

/// Gives spectators time (up to [`CATCH_UP`]) to receive the final versions of what they watch.
async fn catch_up(
    spectators: &[Arc<spectator::Spectator>],
    server: &BTreeMap<ResourceId, check::FinalResource>,
) {
    let deadline = Instant::now() + CATCH_UP;
    loop {
        let behind = spectators.iter().any(|s| {
            server
                .iter()
                .any(|(id, fin)| s.last_seen(id).is_some_and(|v| v < fin.version))
        });
        if !behind || Instant::now() >= deadline {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// What each spectator saw.
fn seen_by(spectators: &[Arc<spectator::Spectator>]) -> SubscriberLog {
    spectators
        .iter()
        .map(|s| {
            let seen = s.seen.lock().unwrap_or_else(|e| e.into_inner()).clone();
            (s.name.clone(), seen)
        })
        .collect()
}

/// Creates one shared resource owned by [`GUILD_OWNER`], with no regeneration.
async fn create_guild_resource(service: &Client, name: &str) -> Result<Entry, SwarmError> {
    let params = ResourceParams {
        initial_amount: 1_000_000,
        max_amount: 1_000_000_000_000,
        regen_milli: 0,
    };
    let create =
        Command::create_for(PlayerId::new(GUILD_OWNER), "guild-gold", Some(params)).named(name);
    let applied = service
        .execute(&create)
        .await
        .map_err(|e| SwarmError::Guild(e.to_string()))?;
    Ok(Entry {
        resource_id: applied.resource_id,
        command_id: create.id(),
        op: Op::Create {
            initial: applied.resource.amount,
            regen_milli: applied.resource.regen_milli.unwrap_or(0),
        },
        outcome: Outcome::Applied {
            version: applied.version,
        },
    })
}

/// A label no earlier run used: the wallets a run creates are named with it.
fn run_label() -> String {
    warden_client::CommandId::new().to_string()[..13].replace('-', "")
}
