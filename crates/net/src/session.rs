//! One session: a task per connection that reads requests, runs them (pipelined), and writes
//! replies and subscription updates from a bounded outbound queue.
//!
//! Reading and writing share one task (a `select!` loop) to keep an idle session small. While a
//! write is blocked on a slow socket the loop reads nothing more from that client (its own
//! back-pressure); other sessions and the subscription tasks never wait for it, because every
//! producer puts into the outbound queue with `try_send`, and a full queue closes the session
//! with 4008.

use crate::auth::TokenKeys;
use crate::inbound;
use crate::outbox::{Outbound, Outbox};
use crate::rate::TokenBucket;
use crate::reply::{self, RequestError};
use crate::request::{CommandMessage, Request};
use crate::subscriptions::{self, Target};
use crate::{NetConfig, NetStats, requests};
use bytes::Bytes;
use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use futures::{FutureExt, Sink, SinkExt, Stream, StreamExt};
use std::collections::HashMap;
use std::sync::Arc;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::error::{CapacityError, Error as WsError, ProtocolError};
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode as WsCloseCode;
use tokio_util::sync::CancellationToken;
use warden_core::domain::{CommandKind, Principal, Role};
use warden_core::node::Node;
use warden_protocol::{
    self, ClientMessage, CloseCode, ErrorCode, PROTOCOL_VERSION, RequestId, ServerMessage,
    Subscribe, Unsubscribe,
};

/// What every session of one server shares.
pub(crate) struct Ctx {
    /// The node the sessions serve.
    pub node: Arc<Node>,
    /// Verifies the upgrade's token.
    pub keys: TokenKeys,
    /// Limits and timings of every session.
    pub config: NetConfig,
    /// The server's counters.
    pub stats: Arc<NetStats>,
    /// Refused upgrades, logged at most once a second (a client retrying a bad token in a loop
    /// must not flood the log).
    pub refusals: crate::listener::RefusalLog,
}

/// Most queued messages written before one flush.
const WRITE_BATCH: usize = 64;

/// A live subscription as the session knows it.
struct SubHandle {
    cancel: CancellationToken,
    task: JoinHandle<()>,
}

/// Why a session ends.
enum End {
    /// The connection broke: nothing more to send.
    Gone,
    /// The client sent a close frame: the reply (queued by tungstenite when it read the frame)
    /// is flushed, so the client sees its own close completed, not an abnormal 1006.
    ClientClosed,
    /// The server closes with this code and reason.
    Close(CloseCode, &'static str),
}

/// How a session ended, for the log line and the metrics.
pub(crate) struct Closed {
    /// The close code the server sent; `None` when the client closed or the connection broke.
    pub code: Option<CloseCode>,
    pub reason: &'static str,
    /// Messages received from the client (well-formed or not).
    pub messages_in: u64,
    /// Messages written to the client (replies, updates, errors; not pings).
    pub messages_out: u64,
}

/// What handling one message decided about the session.
enum Next {
    Continue,
    End(End),
}

/// One session's state: who it is, what it has in flight, its subscriptions and its limits.
struct Session {
    /// What every session shares (node, keys, limits, counters).
    ctx: Arc<Ctx>,
    /// Who the token says this client is.
    principal: Principal,
    /// The sending side of this session's outbound queue.
    outbox: Outbox,
    /// Requests being answered, at most `max_in_flight`; their replies are queued as they finish.
    in_flight: FuturesUnordered<BoxFuture<'static, ServerMessage>>,
    /// Live subscriptions by `sub` id.
    subs: HashMap<u64, SubHandle>,
    /// The `sub` id the next subscription gets.
    next_sub: u64,
    /// Commands per second.
    commands: TokenBucket,
    /// Undecodable messages tolerated in a burst.
    bad: TokenBucket,
    /// Messages received, for the close log line.
    messages_in: u64,
}

/// The connection side of a session: the socket, the outbound queue's receiver, and what ends it.
struct Wire<S> {
    ws: S,
    rx: mpsc::Receiver<Outbound>,
    /// Cancelled when a producer found the outbound queue full (close with 4008).
    overflow: CancellationToken,
    /// Cancelled when the server shuts down.
    shutdown: CancellationToken,
    /// Messages written (not pings).
    messages_out: u64,
}

/// Runs a session on an upgraded connection until the client leaves, it breaks a rule that ends
/// sessions, or `shutdown` is cancelled.
pub(crate) async fn run<S>(
    ws: S,
    principal: Principal,
    ctx: Arc<Ctx>,
    shutdown: CancellationToken,
) -> Closed
where
    S: Stream<Item = Result<Message, WsError>> + Sink<Message, Error = WsError> + Unpin + Send,
{
    NetStats::bump(&ctx.stats.open);
    ctx.node.metrics().connection_opened();
    // Capacity: `outbound_queue` messages; full means this client cannot keep up, so whoever
    // finds it full closes the session (4008) instead of waiting.
    let (tx, rx) = mpsc::channel::<Outbound>(ctx.config.outbound_queue.max(1));
    let overflow = CancellationToken::new();
    let mut wire = Wire {
        ws,
        rx,
        overflow: overflow.clone(),
        shutdown,
        messages_out: 0,
    };
    let mut session = Session {
        outbox: Outbox::new(tx, overflow),
        principal,
        in_flight: FuturesUnordered::new(),
        subs: HashMap::new(),
        next_sub: 1,
        commands: TokenBucket::new(ctx.config.commands_per_second, ctx.config.commands_burst),
        bad: TokenBucket::new(1, ctx.config.bad_message_burst),
        messages_in: 0,
        ctx,
    };
    session.send(&ServerMessage::Welcome {
        protocol: PROTOCOL_VERSION,
        player: session.principal.player.clone(),
        role: session.principal.role,
        server_time: session.ctx.node.clock().now(),
        limits: session.ctx.config.limits(),
    });
    let end = session.serve(&mut wire).await;
    session.stop_subscriptions().await;
    let (ctx, messages_in) = (session.ctx.clone(), session.messages_in);
    drop(session);
    let closed = wire.close(end, messages_in, &ctx).await;
    ctx.stats
        .open
        .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    ctx.node.metrics().connection_closed(closed.code);
    closed
}

impl<S> Wire<S>
where
    S: Stream<Item = Result<Message, WsError>> + Sink<Message, Error = WsError> + Unpin + Send,
{
    /// Writes `first` and whatever else is queued (up to a batch), then flushes, unless the
    /// session overflows or the shutdown's grace runs out first. `None` when written.
    async fn write(&mut self, first: Outbound, close_timeout: std::time::Duration) -> Option<End> {
        let give_up = async {
            tokio::select! {
                _ = self.overflow.cancelled() => {}
                _ = async {
                    self.shutdown.cancelled().await;
                    tokio::time::sleep(close_timeout).await;
                } => {}
            }
        };
        tokio::select! {
            written = write_batch(&mut self.ws, first, &mut self.rx) => match written {
                Ok(frames) => {
                    self.messages_out += frames;
                    None
                }
                Err(_) => Some(End::Gone),
            },
            // An overflow is closed with 4008 by the session's loop.
            _ = give_up => (!self.overflow.is_cancelled()).then_some(End::Gone),
        }
    }

    /// Ends the connection: for a close by the server, the last queued replies (unless it is a
    /// slow consumer's), the close frame, then whatever the client still sends until it answers
    /// the close, so the socket is not reset with unread data (which could lose the close frame
    /// on the client side).
    async fn close(mut self, end: End, messages_in: u64, ctx: &Ctx) -> Closed {
        let mut closed = Closed {
            code: None,
            reason: "",
            messages_in,
            messages_out: self.messages_out,
        };
        let (code, reason) = match end {
            End::Close(code, reason) => (code, reason),
            End::ClientClosed => {
                let _ = tokio::time::timeout(ctx.config.close_timeout, self.ws.flush()).await;
                return closed;
            }
            End::Gone => return closed,
        };
        closed.code = Some(code);
        closed.reason = reason;
        if code == CloseCode::SlowConsumer {
            NetStats::bump(&ctx.stats.slow_consumers);
        }
        if matches!(
            code,
            CloseCode::UnsupportedData | CloseCode::Policy | CloseCode::TooBig
        ) {
            NetStats::bump(&ctx.stats.abuse_closes);
        }
        let frame = CloseFrame {
            code: WsCloseCode::from(code.code()),
            reason: reason.into(),
        };
        let _ = tokio::time::timeout(ctx.config.close_timeout, async {
            if code != CloseCode::SlowConsumer {
                // Queued replies first (a shutdown's last answers); a slow consumer's queue is
                // exactly what it could not take, so it is dropped.
                while let Ok(msg) = self.rx.try_recv() {
                    if matches!(msg, Outbound::Frame(_)) {
                        closed.messages_out += 1;
                    }
                    if self.ws.feed(msg.into_message()).await.is_err() {
                        return;
                    }
                }
            }
            if self.ws.send(Message::Close(Some(frame))).await.is_err() {
                return;
            }
            while let Some(Ok(_)) = self.ws.next().await {}
        })
        .await;
        closed
    }
}

/// Writes `first` and whatever else is queued (up to a batch), then flushes. Returns how many
/// messages (not pings) it wrote.
async fn write_batch<S>(
    ws: &mut S,
    first: Outbound,
    rx: &mut mpsc::Receiver<Outbound>,
) -> Result<u64, WsError>
where
    S: Sink<Message, Error = WsError> + Unpin,
{
    let mut frames = u64::from(matches!(first, Outbound::Frame(_)));
    ws.feed(first.into_message()).await?;
    for _ in 1..WRITE_BATCH {
        match rx.try_recv() {
            Ok(msg) => {
                frames += u64::from(matches!(msg, Outbound::Frame(_)));
                ws.feed(msg.into_message()).await?;
            }
            Err(_) => break,
        }
    }
    ws.flush().await?;
    Ok(frames)
}

impl Session {
    /// The session's loop: reads requests (pipelined up to `max_in_flight`), queues their
    /// replies, writes the queue in batches, pings, and watches the idle deadline, until
    /// something ends the session.
    async fn serve<S>(&mut self, wire: &mut Wire<S>) -> End
    where
        S: Stream<Item = Result<Message, WsError>> + Sink<Message, Error = WsError> + Unpin + Send,
    {
        let config = self.ctx.config.clone();
        let mut idle_deadline = Instant::now() + config.idle_timeout;
        let mut ping =
            tokio::time::interval_at(Instant::now() + config.ping_interval, config.ping_interval);
        let mut draining = false;
        loop {
            if draining && self.in_flight.is_empty() && wire.rx.is_empty() {
                return End::Close(CloseCode::GoingAway, "server shutting down");
            }
            let can_read = !draining && self.in_flight.len() < config.max_in_flight;
            tokio::select! {
                biased;
                _ = wire.overflow.cancelled() => {
                    return End::Close(
                        CloseCode::SlowConsumer,
                        "slow consumer: resubscribe with from_version",
                    );
                }
                _ = wire.shutdown.cancelled(), if !draining => {
                    // Stop reading; answer what is in flight, then close.
                    draining = true;
                    for sub in self.subs.values() {
                        sub.cancel.cancel();
                    }
                }
                Some(first) = wire.rx.recv() => {
                    // Replies already decided join this write instead of waiting for the next
                    // flush.
                    self.queue_ready_replies();
                    if let Some(end) = wire.write(first, config.close_timeout).await {
                        return end;
                    }
                    // Room again: wake catch-ups waiting to queue updates from the log.
                    self.outbox.drained();
                }
                Some(reply) = self.in_flight.next(), if !self.in_flight.is_empty() => {
                    self.send(&reply);
                    self.queue_ready_replies();
                }
                frame = wire.ws.next(), if can_read => {
                    idle_deadline = Instant::now() + config.idle_timeout;
                    if let Next::End(end) = self.on_frames(frame, &mut wire.ws).await {
                        return end;
                    }
                }
                _ = tokio::time::sleep_until(idle_deadline), if !draining => {
                    return End::Close(CloseCode::Idle, "idle timeout: no message or pong received");
                }
                _ = ping.tick() => {
                    self.outbox.ping();
                }
            }
        }
    }

    /// Handles `frame`, then every frame the socket has already delivered, before anything is
    /// written, so their replies can share one write and one flush.
    async fn on_frames<S>(&mut self, frame: Option<Result<Message, WsError>>, ws: &mut S) -> Next
    where
        S: Stream<Item = Result<Message, WsError>> + Unpin,
    {
        let mut next = self.on_frame(frame).await;
        while matches!(next, Next::Continue) && self.in_flight.len() < self.ctx.config.max_in_flight
        {
            match ws.next().now_or_never() {
                Some(frame) => next = self.on_frame(frame).await,
                None => break,
            }
        }
        next
    }

    /// Stops every subscription and waits for it (each stops at once when cancelled), so none
    /// outlives its session: when the server's `run` returns, nothing holds the node.
    async fn stop_subscriptions(&mut self) {
        let subs: Vec<SubHandle> = self.subs.drain().map(|(_, sub)| sub).collect();
        for sub in &subs {
            sub.cancel.cancel();
        }
        for sub in subs {
            let _ = sub.task.await;
        }
    }

    /// Queues every in-flight reply that is already decided, without waiting for the others.
    fn queue_ready_replies(&mut self) {
        while let Some(Some(reply)) = self.in_flight.next().now_or_never() {
            self.send(&reply);
        }
    }

    /// Queues a message for the client (closing the session if the queue is full).
    fn send(&self, msg: &ServerMessage) {
        self.ctx.node.metrics().sent(msg);
        self.outbox.send(Bytes::from(warden_protocol::encode(msg)));
    }

    /// Queues the `error` reply to `req`.
    fn refuse(&self, req: RequestId, e: RequestError) {
        self.send(&e.into_reply(Some(req)));
    }

    async fn on_frame(&mut self, frame: Option<Result<Message, WsError>>) -> Next {
        match frame {
            None => Next::End(End::Gone),
            Some(Ok(Message::Binary(bytes))) => {
                self.messages_in += 1;
                self.on_message(&bytes).await
            }
            Some(Ok(Message::Text(_))) => Next::End(End::Close(
                CloseCode::UnsupportedData,
                "text frames are not part of the protocol: send binary MessagePack",
            )),
            // Tungstenite answers pings itself; a pong only proves liveness.
            Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => Next::Continue,
            // Tungstenite has already queued the closing handshake's answer.
            Some(Ok(Message::Close(_))) => Next::End(End::ClientClosed),
            Some(Err(WsError::Capacity(CapacityError::MessageTooLong { .. }))) => Next::End(
                End::Close(CloseCode::TooBig, "message larger than max_frame_bytes"),
            ),
            // The client went away without a closing handshake: nobody to send a close frame to.
            Some(Err(WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake))) => {
                Next::End(End::Gone)
            }
            Some(Err(WsError::Protocol(e))) => {
                tracing::debug!(error = %e, "WebSocket protocol error");
                Next::End(End::Close(
                    CloseCode::ProtocolError,
                    "WebSocket protocol error",
                ))
            }
            Some(Err(_)) => Next::End(End::Gone),
        }
    }

    async fn on_message(&mut self, bytes: &[u8]) -> Next {
        let msg = match inbound::read_request(bytes) {
            Ok(msg) => msg,
            Err(refusal) => {
                // Counted as bad input; too many in a burst ends the session.
                self.ctx.node.metrics().malformed();
                let e = RequestError::new(refusal.code, refusal.message);
                self.send(&e.into_reply(refusal.req));
                return if self.bad.take() {
                    Next::Continue
                } else {
                    Next::End(End::Close(CloseCode::Policy, "too many malformed messages"))
                };
            }
        };
        NetStats::bump(&self.ctx.stats.requests);
        self.ctx.node.metrics().received(&msg);
        self.dispatch(msg).await;
        Next::Continue
    }

    /// What each message does in an open session: commands and reads run as in-flight requests
    /// (their replies queued as they finish); subscriptions and pings are answered here.
    async fn dispatch(&mut self, msg: ClientMessage) {
        let (node, principal) = (self.ctx.node.clone(), self.principal.clone());
        match Request::from(msg) {
            Request::Command(m) => self.command(m),
            Request::Get(m) => self.start(m.req, requests::get(node, principal, m)),
            Request::List(m) => self.start(m.req, requests::list(node, principal, m)),
            Request::History(m) => self.start(m.req, requests::history(node, principal, m)),
            Request::StateAt(m) => self.start(m.req, requests::state_at(node, principal, m)),
            Request::Subscribe(m) => self.subscribe(m).await,
            Request::Unsubscribe(m) => self.unsubscribe(m).await,
            Request::Ping(m) => self.send(&ServerMessage::Pong {
                req: m.req,
                server_time: self.ctx.node.clock().now(),
            }),
        }
    }

    /// Puts a request in flight; its reply (or error) is queued when it finishes.
    fn start(
        &mut self,
        req: RequestId,
        answer: impl Future<Output = reply::Answer> + Send + 'static,
    ) {
        self.in_flight
            .push(Box::pin(answer.map(move |a| reply::reply(req, a))));
    }

    /// A command: refused here if a spectator sent it or the session is over its rate, else run
    /// through the resource's actor.
    fn command(&mut self, msg: CommandMessage) {
        let kind = CommandKind::from(&msg.command);
        let refusal = if self.principal.role == Role::Spectator {
            Some(RequestError::new(
                ErrorCode::Forbidden,
                "spectators cannot send commands",
            ))
        } else if !self.commands.take() {
            Some(RequestError::new(
                ErrorCode::RateLimited,
                format!(
                    "more than {} commands per second; slow down and retry with the same command_id",
                    self.ctx.config.commands_per_second
                ),
            ))
        } else {
            None
        };
        if let Some(e) = refusal {
            self.ctx.node.metrics().command_refused_early(kind, e.code);
            return self.refuse(msg.req, e);
        }
        let (node, principal) = (self.ctx.node.clone(), self.principal.clone());
        let req = msg.req;
        let received = std::time::Instant::now();
        self.start(req, requests::command(node, principal, msg, received));
    }

    async fn unsubscribe(&mut self, m: Unsubscribe) {
        match self.subs.remove(&m.sub) {
            Some(handle) => {
                // Wait for the task so no update of this subscription follows the reply.
                handle.cancel.cancel();
                let _ = handle.task.await;
                self.send(&ServerMessage::Unsubscribed {
                    req: m.req,
                    sub: m.sub,
                });
            }
            None => self.refuse(
                m.req,
                RequestError::new(
                    ErrorCode::UnknownSubscription,
                    format!("no live subscription {} in this session", m.sub),
                ),
            ),
        }
    }

    /// What a `subscribe` watches: exactly one of a resource and an owner.
    fn target(m: &Subscribe) -> Result<Target, RequestError> {
        let bad = |message| Err(RequestError::new(ErrorCode::BadMessage, message));
        match (m.resource_id, &m.owner) {
            (Some(id), None) => Ok(Target::Resource(id)),
            (None, Some(_)) if m.from_version.is_some() => {
                bad("from_version applies to a resource_id subscription only")
            }
            (None, Some(owner)) => Ok(Target::Owner(owner.clone())),
            _ => bad("give exactly one of resource_id, wallet and owner"),
        }
    }

    async fn subscribe(&mut self, m: Subscribe) {
        let target = match Self::target(&m) {
            Ok(target) => target,
            Err(e) => return self.refuse(m.req, e),
        };
        self.subs.retain(|_, s| !s.task.is_finished());
        let max = self.ctx.config.max_subscriptions;
        if self.subs.len() >= max {
            let message = format!("at most {max} subscriptions per session");
            let e = RequestError::new(ErrorCode::TooManySubscriptions, message);
            return self.refuse(m.req, e);
        }
        let sub = self.next_sub;
        let cancel = CancellationToken::new();
        let started = subscriptions::start(
            self.ctx.node.clone(),
            &self.principal,
            sub,
            target,
            m.from_version,
            self.outbox.clone(),
            cancel.clone(),
        )
        .await;
        let (resources, task) = match started {
            Ok(started) => started,
            Err(e) => return self.refuse(m.req, e),
        };
        self.next_sub += 1;
        // Queued before the task can queue anything: the reply precedes every update.
        self.send(&ServerMessage::Subscribed {
            req: m.req,
            sub,
            resources,
        });
        let open = self.ctx.node.metrics().subscription_opened();
        let task = tokio::spawn(async move {
            let _open = open;
            task.await
        });
        self.subs.insert(sub, SubHandle { cancel, task });
    }
}
