//! One bot: its own player identity and connection, a resource it creates, and a realistic mix
//! of commands and queries, closed-loop (send, await the reply, next) or open-loop (send on a
//! schedule, latency measured from the scheduled time so a slow server cannot hide its delays).
//!
//! A bot owns its socket in its own task: no helper task, no channel, no thread per bot. It uses
//! `warden-client`'s bare [`Connection`] (connect, `welcome`, frames), not its `Client`: a
//! `Client` adds a task, a channel hop each way and a oneshot per request, which at ten thousand
//! bots in open-loop mode costs throughput the tool exists to measure; and a bot resends the very
//! frames it sent (same `req`, same bytes), which needs no matching beyond its own map.
//! Requests that time out are resent with the same `req` and `command_id` (the server answers a
//! repeat with the first outcome); after a dropped connection (a server restart included) the
//! bot reconnects, trying for up to `reconnect_for`, and resends what was pending with the same
//! `req` and `command_id`: each command applies once, and the reply (often `duplicate: true`)
//! settles it. Every command and what it was told goes into the bot's ledger entries.

use crate::check::{Entry, Op, Outcome};
use crate::swarm::{SwarmEnv, TimedOut};
use rand::RngExt;
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::time::{Instant, sleep_until};
use warden_client::{Bytes, ClientError, Command, Connection};
use warden_protocol::{
    ClientMessage, ClientResource, CommandId, ErrorCode, Get, History, List, PlayerId, RequestId,
    ResourceId, Role, ServerMessage,
};

mod replies;

/// Most requests one bot has in flight in open-loop mode; past it the bot waits (its latency
/// clock keeps running from the scheduled time, so the wait is measured, not hidden).
const MAX_IN_FLIGHT: usize = 64;
/// Sends of one request before its outcome is declared unknown.
const MAX_ATTEMPTS: u32 = 3;
/// Largest amount one allocate or add moves.
const MAX_STEP: u64 = 50;

/// What a bot hands back when it stops.
#[derive(Debug)]
pub struct BotResult {
    pub player: PlayerId,
    pub entries: Vec<Entry>,
}

/// The bot's own resource, as its replies describe it.
#[derive(Debug, Clone, Copy)]
struct Own {
    id: ResourceId,
    amount: u64,
    max: u64,
    /// Locked, or possibly locked (a lock whose outcome is unknown).
    locked: bool,
}

/// What a request is, for recording its reply.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Command {
        resource: Option<ResourceId>,
        command_id: CommandId,
        op: Op,
    },
    Query,
}

#[derive(Debug)]
struct Pending {
    kind: Kind,
    frame: Bytes,
    /// Latency is measured from here: the send (closed-loop) or the scheduled time (open-loop).
    origin: Instant,
    deadline: Instant,
    attempts: u32,
}

// One value per wake-up of one bot, never stored in bulk: boxing the message would only add an
// allocation per reply.
#[allow(clippy::large_enum_variant)]
enum Wake {
    Stop,
    Send,
    Msg(Result<ServerMessage, ClientError>),
    Timeout,
}

#[derive(Debug)]
pub struct Bot {
    shared: Arc<SwarmEnv>,
    index: usize,
    player: PlayerId,
    role: Role,
    /// Whether this bot's allocates and adds go half to the shared guild resources.
    guild_member: bool,
    conn: Option<Connection>,
    next_req: RequestId,
    pending: HashMap<RequestId, Pending>,
    own: Option<Own>,
    /// Follow-ups of a lock: the allocate that must meet the lock, then the unlock.
    script: VecDeque<ClientMessageKind>,
    entries: Vec<Entry>,
    /// Minimum time between two sends in closed-loop mode (the server's announced rate limit).
    pace: Duration,
    /// Whether this bot ever sent a lock (open-loop replies can arrive out of order, so at the
    /// end such a bot unlocks whatever its last reply said).
    ever_locked: bool,
    /// Set during the final unlock: its `not_locked` refusal is expected, not an error.
    cleaning_up: bool,
}

/// A planned request, before it gets its `req`.
#[derive(Debug, Clone, Copy)]
enum ClientMessageKind {
    Create,
    Allocate(ResourceId, u64),
    Add(ResourceId, u64),
    Lock(ResourceId),
    Unlock(ResourceId),
    Get(ResourceId),
    List,
    History(ResourceId),
}

impl Bot {
    pub fn new(shared: Arc<SwarmEnv>, index: usize) -> Self {
        let guild_member = (index as f64)
            < shared.config.guild_fraction * shared.config.bots as f64
            && !shared.guild.is_empty();
        Self {
            player: PlayerId::new(format!("bot-{index:05}")),
            // A guild member acts for the guild's back-end: only a service may touch resources it
            // does not own.
            role: if guild_member {
                Role::Service
            } else {
                Role::Player
            },
            guild_member,
            shared,
            index,
            conn: None,
            next_req: 1,
            pending: HashMap::new(),
            own: None,
            script: VecDeque::new(),
            entries: Vec::new(),
            pace: Duration::ZERO,
            ever_locked: false,
            cleaning_up: false,
        }
    }

    /// Runs the bot: wait for its start time, connect, create its resource, work until told to
    /// stop, drain, unlock what it holds, close.
    pub async fn run(mut self, start_at: Instant) -> BotResult {
        let stop = self.shared.stop.clone();
        tokio::select! {
            _ = stop.cancelled() => return self.finish(),
            _ = sleep_until(start_at) => {}
        }
        if !self.connect().await {
            self.shared.bot_ready();
            return self.finish();
        }
        let created = self.roundtrip(ClientMessageKind::Create).await;
        self.shared.bot_ready();
        if created.is_ok() && self.own.is_some() {
            self.work().await;
        }
        self.cleanup().await;
        if let Some(conn) = self.conn.take() {
            self.shared.rec.counters.connection_closed();
            conn.close().await;
        }
        self.finish()
    }

    fn finish(self) -> BotResult {
        BotResult {
            player: self.player,
            entries: self.entries,
        }
    }

    /// Connects, trying again for up to `reconnect_for` (a server restart).
    async fn connect(&mut self) -> bool {
        let token = crate::tokens::mint(&self.shared.keys, self.player.as_str(), self.role);
        let rec = self.shared.rec.clone();
        let connected = Connection::connect_patiently(
            &self.shared.config.url,
            &token,
            &self.shared.config.client_config(),
            self.shared.config.reconnect_for,
            |e| {
                rec.error(connect_code(e));
                rec.counters
                    .connect_failures
                    .fetch_add(1, Ordering::Relaxed);
            },
        )
        .await;
        let Ok(conn) = connected else {
            return false;
        };
        let per_s = conn.welcome().limits.commands_per_second;
        if per_s > 0 {
            self.pace = Duration::from_secs_f64(1.0 / f64::from(per_s));
        }
        self.pace = self.pace.max(self.shared.config.think);
        self.conn = Some(conn);
        self.shared.rec.counters.connection_opened();
        true
    }

    /// After a dropped connection: reconnect and resend everything pending. False when the
    /// server cannot be reached again; pending commands then have an unknown outcome.
    async fn reconnect(&mut self) -> bool {
        if self.conn.take().is_some() {
            self.shared.rec.counters.connection_closed();
        }
        self.shared.rec.error("disconnected");
        if self.connect().await {
            let now = Instant::now();
            let mut frames: Vec<_> = self
                .pending
                .values_mut()
                .map(|p| {
                    p.deadline = now + self.shared.config.request_timeout;
                    p.frame.clone()
                })
                .collect();
            frames.sort();
            for frame in frames {
                if let Some(conn) = self.conn.as_mut()
                    && conn.send_frame(frame).await.is_err()
                {
                    return Box::pin(self.reconnect()).await;
                }
            }
            return true;
        }
        for (_, p) in std::mem::take(&mut self.pending) {
            self.give_up(p);
        }
        false
    }

    /// Sends `kind` at latency origin `origin`.
    async fn send(&mut self, kind: ClientMessageKind, origin: Instant) -> Result<RequestId, ()> {
        let req = self.next_req;
        self.next_req += 1;
        let (msg, k) = self.build(kind, req);
        let frame = Bytes::from(warden_protocol::encode(&msg));
        self.pending.insert(
            req,
            Pending {
                kind: k,
                frame: frame.clone(),
                origin,
                deadline: Instant::now() + self.shared.config.request_timeout,
                attempts: 1,
            },
        );
        let sent = match self.conn.as_mut() {
            Some(conn) => conn.send_frame(frame).await.is_ok(),
            None => false,
        };
        if !sent && !self.reconnect().await {
            return Err(());
        }
        Ok(req)
    }

    /// The message of `kind` with request id `req` (a command gets a fresh command id), and what
    /// to record of its reply.
    fn build(&self, kind: ClientMessageKind, req: RequestId) -> (ClientMessage, Kind) {
        let command = |command: Command, op| {
            let kind = Kind::Command {
                resource: command.resource_id(),
                command_id: command.id(),
                op,
            };
            (command.to_message(req), kind)
        };
        match kind {
            // The initial amount is read from the reply.
            ClientMessageKind::Create => command(
                Command::create_named(
                    self.shared.config.own_type.clone(),
                    format!("{}:{}", self.shared.config.own_type, self.shared.run),
                ),
                Op::Create {
                    initial: 0,
                    regen_milli: 0,
                },
            ),
            ClientMessageKind::Allocate(id, amount) => command(
                Command::allocate(id, amount, "bot purchase"),
                Op::Allocate(amount),
            ),
            ClientMessageKind::Add(id, amount) => {
                command(Command::add(id, amount, "bot reward"), Op::Add(amount))
            }
            ClientMessageKind::Lock(id) => command(
                Command::lock(
                    id,
                    "bot trade",
                    Duration::from_millis(self.shared.config.lock_ms),
                ),
                Op::Lock,
            ),
            ClientMessageKind::Unlock(id) => command(Command::unlock(id), Op::Unlock),
            ClientMessageKind::Get(id) => (
                ClientMessage::Get(Get {
                    req,
                    resource_id: id,
                }),
                Kind::Query,
            ),
            ClientMessageKind::List => {
                (ClientMessage::List(List { req, owner: None }), Kind::Query)
            }
            ClientMessageKind::History(id) => (
                ClientMessage::History(History {
                    req,
                    resource_id: id,
                    after_version: 0,
                    limit: Some(20),
                }),
                Kind::Query,
            ),
        }
    }

    /// The next request of the mix.
    fn plan(&mut self) -> ClientMessageKind {
        if let Some(next) = self.script.pop_front() {
            return next;
        }
        let Some(own) = self.own else {
            return ClientMessageKind::List;
        };
        let mut rng = rand::rng();
        let step = rng.random_range(1..=MAX_STEP);
        let guild = &self.shared.guild;
        let target_guild = self.guild_member && rng.random_bool(0.5);
        let roll = rng.random_range(0..100u32);
        match roll {
            0..65 if target_guild => {
                let id = guild[rng.random_range(0..guild.len())];
                if roll < 35 {
                    ClientMessageKind::Allocate(id, step)
                } else {
                    ClientMessageKind::Add(id, step)
                }
            }
            // Spend when there is enough (as far as this bot knows), else earn; never overfill.
            0..35 if own.amount >= step && !own.locked => ClientMessageKind::Allocate(own.id, step),
            0..65 if own.amount + step <= own.max => ClientMessageKind::Add(own.id, step),
            0..65 => ClientMessageKind::Allocate(own.id, step),
            65..80 => ClientMessageKind::Get(own.id),
            80..85 => ClientMessageKind::List,
            85..90 if !own.locked => {
                // A trade: lock, try to spend (refused while locked), unlock.
                self.script.push_back(ClientMessageKind::Allocate(
                    own.id,
                    step.min(own.amount.max(1)),
                ));
                self.script.push_back(ClientMessageKind::Unlock(own.id));
                self.ever_locked = true;
                ClientMessageKind::Lock(own.id)
            }
            _ => ClientMessageKind::History(own.id),
        }
    }

    /// The main loop until the stop signal, then until nothing is pending.
    async fn work(&mut self) {
        let open_loop = self.shared.config.rate.map(|total| {
            // Each bot's share of the total rate.
            Duration::from_secs_f64(self.shared.config.bots as f64 / total.max(0.001))
        });
        let stop = self.shared.stop.clone();
        let mut stopping = false;
        let mut next_send = Instant::now();
        loop {
            if stopping && self.pending.is_empty() {
                return;
            }
            let can_send = !stopping
                && match open_loop {
                    Some(_) => self.pending.len() < MAX_IN_FLIGHT,
                    None => self.pending.is_empty(),
                };
            let next_deadline = self.pending.values().map(|p| p.deadline).min();
            let Some(conn) = self.conn.as_mut() else {
                return;
            };
            let wake = tokio::select! {
                biased;
                _ = stop.cancelled(), if !stopping => Wake::Stop,
                msg = conn.recv() => Wake::Msg(msg),
                _ = sleep_until(next_deadline.unwrap_or(next_send)), if next_deadline.is_some() => Wake::Timeout,
                _ = sleep_until(next_send), if can_send => Wake::Send,
            };
            match wake {
                Wake::Stop => stopping = true,
                Wake::Send => {
                    let kind = self.plan();
                    let origin = match open_loop {
                        Some(_) => next_send,
                        None => Instant::now(),
                    };
                    next_send = match open_loop {
                        Some(interval) => next_send + interval,
                        None => Instant::now() + self.pace,
                    };
                    if self.send(kind, origin).await.is_err() {
                        return;
                    }
                }
                Wake::Msg(Ok(msg)) => {
                    self.on_message(msg);
                }
                Wake::Msg(Err(_)) => {
                    if !self.reconnect().await {
                        return;
                    }
                }
                Wake::Timeout => {
                    if self.on_timeouts().await.is_err() {
                        return;
                    }
                }
            }
        }
    }

    /// Sends one request and waits for its reply (set-up and clean-up, outside the measured mix).
    async fn roundtrip(&mut self, kind: ClientMessageKind) -> Result<(), TimedOut> {
        let req = self
            .send(kind, Instant::now())
            .await
            .map_err(|_| TimedOut)?;
        while self.pending.contains_key(&req) {
            let deadline = self.pending[&req].deadline;
            let Some(conn) = self.conn.as_mut() else {
                return Err(TimedOut);
            };
            let got = tokio::select! {
                msg = conn.recv() => Some(msg),
                _ = sleep_until(deadline) => None,
            };
            match got {
                Some(Ok(msg)) => self.on_message(msg),
                Some(Err(_)) => {
                    if !self.reconnect().await {
                        return Err(TimedOut);
                    }
                }
                None => self.on_timeouts().await.map_err(|_| TimedOut)?,
            }
        }
        Ok(())
    }

    /// Unlocks the bot's resource if it may still be locked, so no lock expires after the final
    /// read (an expiry appends an event nobody acknowledged). In open-loop mode replies may
    /// arrive in another order than the server applied them, so a bot that ever locked unlocks
    /// regardless (a `not_locked` refusal is harmless).
    async fn cleanup(&mut self) {
        self.script.clear();
        let open_loop = self.shared.config.rate.is_some();
        if let Some(own) = self.own
            && (own.locked || (open_loop && self.ever_locked))
            && self.conn.is_some()
        {
            self.cleaning_up = true;
            let _ = self.roundtrip(ClientMessageKind::Unlock(own.id)).await;
        }
    }
}

/// Error codes the ledger records as an unknown outcome (the final check then reads the history
/// to see whether the command applied), rather than as a refusal that wrote nothing.
pub fn ambiguous(code: ErrorCode) -> bool {
    matches!(
        code,
        ErrorCode::Unavailable | ErrorCode::Internal | ErrorCode::ShuttingDown
    )
}

fn connect_code(e: &ClientError) -> &'static str {
    match e {
        ClientError::Upgrade { .. } => "connect_refused",
        ClientError::Timeout(_) => "connect_timeout",
        _ => "connect_failed",
    }
}

fn tracing_unexpected(index: usize, msg: &ServerMessage) {
    eprintln!("bot {index}: unexpected reply {msg:?}");
}
