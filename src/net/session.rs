//! One session: a task per connection that reads requests, runs them (pipelined), and writes
//! replies and subscription updates from a bounded outbound queue.
//!
//! Reading and writing share one task (a `select!` loop) to keep an idle session small. While a
//! write is blocked on a slow socket the loop reads nothing more from that client (its own
//! back-pressure); other sessions and the subscription tasks never wait for it, because every
//! producer puts into the outbound queue with `try_send`, and a full queue closes the session
//! with 4008.

use crate::domain::{
    AddResource, AllocateResource, Command, CreateResource, LockResource, Principal, Role,
    UnlockResource,
};
use crate::net::inbound::{self, TokenBucket};
use crate::net::listener::Ctx;
use crate::net::subscriptions::{self, Outbound, Outbox, SubscribeError, Target};
use crate::net::{
    CLOSE_GOING_AWAY, CLOSE_IDLE, CLOSE_POLICY, CLOSE_SLOW_CONSUMER, CLOSE_TOO_BIG,
    CLOSE_UNSUPPORTED_DATA, NetStats, requests,
};
use crate::protocol::{self, ClientMessage, PROTOCOL_VERSION, RequestId, ServerMessage};
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
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_util::sync::CancellationToken;

/// Most queued messages written before one flush.
const WRITE_BATCH: usize = 64;

/// A live subscription as the session knows it.
struct SubHandle {
    cancel: CancellationToken,
    task: JoinHandle<()>,
}

/// Why a session ends.
enum End {
    /// The client closed or the connection broke: nothing more to send.
    Gone,
    /// The server closes with this code and reason.
    Close(u16, &'static str),
}

/// How a session ended, for the log line and the metrics.
pub(crate) struct Closed {
    /// The close code the server sent; `None` when the client closed or the connection broke.
    pub code: Option<u16>,
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

struct Session {
    ctx: Arc<Ctx>,
    principal: Principal,
    outbox: Outbox,
    in_flight: FuturesUnordered<BoxFuture<'static, ServerMessage>>,
    subs: HashMap<u64, SubHandle>,
    next_sub: u64,
    commands: TokenBucket,
    bad: TokenBucket,
    /// Messages received, for the close log line.
    messages_in: u64,
}

/// Runs a session on an upgraded connection until the client leaves, it breaks a rule that ends
/// sessions, or `shutdown` is cancelled.
pub(crate) async fn run<S>(
    mut ws: S,
    principal: Principal,
    ctx: Arc<Ctx>,
    shutdown: CancellationToken,
) -> Closed
where
    S: Stream<Item = Result<Message, WsError>> + Sink<Message, Error = WsError> + Unpin + Send,
{
    NetStats::bump(&ctx.stats.open);
    ctx.node.metrics.connection_opened();
    let mut messages_out = 0u64;
    let config = ctx.config.clone();
    // Capacity: `outbound_queue` messages; full means this client cannot keep up, so whoever
    // finds it full closes the session (4008) instead of waiting.
    let (tx, mut rx) = mpsc::channel::<Outbound>(config.outbound_queue.max(1));
    let overflow = CancellationToken::new();
    let mut session = Session {
        outbox: Outbox::new(tx, overflow.clone()),
        principal,
        in_flight: FuturesUnordered::new(),
        subs: HashMap::new(),
        next_sub: 1,
        commands: TokenBucket::new(config.commands_per_second, config.commands_burst),
        bad: TokenBucket::new(1, config.bad_message_burst),
        messages_in: 0,
        ctx,
    };
    session.send(&ServerMessage::Welcome {
        protocol: PROTOCOL_VERSION,
        player: session.principal.player.clone(),
        role: session.principal.role,
        server_time: session.ctx.node.registry.clock().now(),
        limits: config.limits(),
    });

    let mut idle_deadline = Instant::now() + config.idle_timeout;
    let mut ping =
        tokio::time::interval_at(Instant::now() + config.ping_interval, config.ping_interval);
    let mut draining = false;
    let end = loop {
        if draining && session.in_flight.is_empty() && rx.is_empty() {
            break End::Close(CLOSE_GOING_AWAY, "server shutting down");
        }
        let can_read = !draining && session.in_flight.len() < config.max_in_flight;
        tokio::select! {
            biased;
            _ = overflow.cancelled() => {
                break End::Close(CLOSE_SLOW_CONSUMER, "slow consumer: resubscribe with from_version");
            }
            _ = shutdown.cancelled(), if !draining => {
                // Stop reading; answer what is in flight, then close.
                draining = true;
                for sub in session.subs.values() {
                    sub.cancel.cancel();
                }
            }
            Some(first) = rx.recv() => {
                // Replies already decided join this write instead of waiting for the next flush.
                session.queue_ready_replies();
                let give_up = async {
                    tokio::select! {
                        _ = overflow.cancelled() => {}
                        _ = async {
                            shutdown.cancelled().await;
                            tokio::time::sleep(config.close_timeout).await;
                        } => {}
                    }
                };
                tokio::select! {
                    written = write_batch(&mut ws, first, &mut rx) => match written {
                        Ok(frames) => {
                            messages_out += frames;
                            // Room again: wake catch-ups waiting to queue updates from the log.
                            session.outbox.drained();
                        }
                        Err(_) => break End::Gone,
                    },
                    _ = give_up => {
                        if overflow.is_cancelled() {
                            continue; // the first branch closes with 4008
                        }
                        break End::Gone;
                    }
                }
            }
            Some(reply) = session.in_flight.next(), if !session.in_flight.is_empty() => {
                session.send(&reply);
                session.queue_ready_replies();
            }
            frame = ws.next(), if can_read => {
                idle_deadline = Instant::now() + config.idle_timeout;
                let mut next = session.on_frame(frame).await;
                // Frames the socket has already delivered are handled before anything is
                // written, so their replies can share one write and one flush.
                while matches!(next, Next::Continue)
                    && session.in_flight.len() < config.max_in_flight
                {
                    match ws.next().now_or_never() {
                        Some(frame) => next = session.on_frame(frame).await,
                        None => break,
                    }
                }
                match next {
                    Next::Continue => {}
                    Next::End(end) => break end,
                }
            }
            _ = tokio::time::sleep_until(idle_deadline), if !draining => {
                break End::Close(CLOSE_IDLE, "idle timeout: no message or pong received");
            }
            _ = ping.tick() => {
                session.outbox.ping();
            }
        }
    };

    // Stop every subscription and wait for it (each stops at once when cancelled), so none
    // outlives its session: when the server's `run` returns, nothing holds the node.
    let subs: Vec<SubHandle> = session.subs.drain().map(|(_, sub)| sub).collect();
    for sub in &subs {
        sub.cancel.cancel();
    }
    for sub in subs {
        let _ = sub.task.await;
    }
    let stats = session.ctx.stats.clone();
    let metrics = session.ctx.node.metrics.clone();
    let mut closed = Closed {
        code: None,
        reason: "",
        messages_in: session.messages_in,
        messages_out,
    };
    match end {
        End::Gone => {}
        End::Close(code, reason) => {
            closed.code = Some(code);
            closed.reason = reason;
            if code == CLOSE_SLOW_CONSUMER {
                NetStats::bump(&stats.slow_consumers);
            }
            if matches!(code, CLOSE_UNSUPPORTED_DATA | CLOSE_POLICY | CLOSE_TOO_BIG) {
                NetStats::bump(&stats.abuse_closes);
            }
            let frame = CloseFrame {
                code: CloseCode::from(code),
                reason: reason.into(),
            };
            let close_timeout = config.close_timeout;
            // Deliver the close frame, then read until the client answers it, so the socket is
            // not reset with unread data (which could lose the close frame on the client side).
            let _ = tokio::time::timeout(close_timeout, async {
                if code != CLOSE_SLOW_CONSUMER {
                    // Queued replies first (a shutdown's last answers); a slow consumer's queue
                    // is exactly what it could not take, so it is dropped.
                    while let Ok(msg) = rx.try_recv() {
                        if matches!(msg, Outbound::Frame(_)) {
                            closed.messages_out += 1;
                        }
                        if ws.feed(msg.into_message()).await.is_err() {
                            return;
                        }
                    }
                }
                if ws.send(Message::Close(Some(frame))).await.is_err() {
                    return;
                }
                while let Some(Ok(_)) = ws.next().await {}
            })
            .await;
        }
    }
    stats
        .open
        .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    metrics.connection_closed(closed.code);
    closed
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
    /// Queues every in-flight reply that is already decided, without waiting for the others.
    fn queue_ready_replies(&mut self) {
        while let Some(Some(reply)) = self.in_flight.next().now_or_never() {
            self.send(&reply);
        }
    }

    /// Queues a message for the client (closing the session if the queue is full).
    fn send(&self, msg: &ServerMessage) {
        self.ctx.node.metrics.sent(msg);
        self.outbox.send(Bytes::from(protocol::encode(msg)));
    }

    fn error(&self, req: Option<RequestId>, code: &str, message: impl Into<String>) {
        self.send(&requests::error(req, code, message));
    }

    async fn on_frame(&mut self, frame: Option<Result<Message, WsError>>) -> Next {
        match frame {
            None => Next::End(End::Gone),
            Some(Ok(Message::Binary(bytes))) => {
                self.messages_in += 1;
                self.on_message(&bytes).await
            }
            Some(Ok(Message::Text(_))) => Next::End(End::Close(
                CLOSE_UNSUPPORTED_DATA,
                "text frames are not part of the protocol: send binary MessagePack",
            )),
            // Tungstenite answers pings itself; a pong only proves liveness.
            Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => Next::Continue,
            // Tungstenite has already queued the closing handshake's answer.
            Some(Ok(Message::Close(_))) => Next::End(End::Gone),
            Some(Err(WsError::Capacity(CapacityError::MessageTooLong { .. }))) => Next::End(
                End::Close(CLOSE_TOO_BIG, "message larger than max_frame_bytes"),
            ),
            // The client went away without a closing handshake: nobody to send a close frame to.
            Some(Err(WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake))) => {
                Next::End(End::Gone)
            }
            Some(Err(WsError::Protocol(e))) => {
                tracing::debug!(error = %e, "WebSocket protocol error");
                Next::End(End::Close(1002, "WebSocket protocol error"))
            }
            Some(Err(_)) => Next::End(End::Gone),
        }
    }

    /// Counts an undecodable message; too many in a burst ends the session.
    fn bad_message(&mut self, req: Option<RequestId>, code: &str, message: String) -> Next {
        self.ctx.node.metrics.malformed();
        self.error(req, code, message);
        if self.bad.take() {
            Next::Continue
        } else {
            Next::End(End::Close(CLOSE_POLICY, "too many malformed messages"))
        }
    }

    async fn on_message(&mut self, bytes: &[u8]) -> Next {
        let msg = match inbound::read_request(bytes) {
            Ok(msg) => msg,
            Err(refusal) => return self.bad_message(refusal.req, refusal.code, refusal.message),
        };
        NetStats::bump(&self.ctx.stats.requests);
        self.ctx.node.metrics.received(&msg);
        self.dispatch(msg).await;
        Next::Continue
    }

    /// What each message does in an open session (the only state a session has).
    async fn dispatch(&mut self, msg: ClientMessage) {
        let principal = self.principal.clone();
        let node = self.ctx.node.clone();
        match msg {
            ClientMessage::Create {
                req,
                command_id,
                resource_type,
                owner,
                params,
            } => self.command(
                req,
                command_id,
                Command::Create(CreateResource {
                    resource_type,
                    owner,
                    params,
                }),
            ),
            ClientMessage::Allocate {
                req,
                command_id,
                resource_id,
                amount,
                reason,
            } => self.command(
                req,
                command_id,
                Command::Allocate(AllocateResource {
                    resource_id,
                    amount,
                    reason,
                }),
            ),
            ClientMessage::Add {
                req,
                command_id,
                resource_id,
                amount,
                reason,
            } => self.command(
                req,
                command_id,
                Command::Add(AddResource {
                    resource_id,
                    amount,
                    reason,
                }),
            ),
            ClientMessage::Lock {
                req,
                command_id,
                resource_id,
                reason,
                duration_ms,
            } => self.command(
                req,
                command_id,
                Command::Lock(LockResource {
                    resource_id,
                    reason,
                    duration_ms,
                }),
            ),
            ClientMessage::Unlock {
                req,
                command_id,
                resource_id,
            } => self.command(
                req,
                command_id,
                Command::Unlock(UnlockResource { resource_id }),
            ),
            ClientMessage::Get { req, resource_id } => {
                self.in_flight
                    .push(Box::pin(requests::get(node, principal, req, resource_id)));
            }
            ClientMessage::List { req, owner } => {
                self.in_flight
                    .push(Box::pin(requests::list(node, principal, req, owner)));
            }
            ClientMessage::History {
                req,
                resource_id,
                after_version,
                limit,
            } => {
                self.in_flight.push(Box::pin(requests::history(
                    node,
                    principal,
                    req,
                    resource_id,
                    after_version,
                    limit,
                )));
            }
            ClientMessage::StateAt {
                req,
                resource_id,
                version,
                at,
            } => {
                self.in_flight.push(Box::pin(requests::state_at(
                    node,
                    principal,
                    req,
                    resource_id,
                    version,
                    at,
                )));
            }
            ClientMessage::Subscribe {
                req,
                resource_id,
                owner,
                from_version,
            } => self.subscribe(req, resource_id, owner, from_version).await,
            ClientMessage::Unsubscribe { req, sub } => match self.subs.remove(&sub) {
                Some(handle) => {
                    // Wait for the task so no update of this subscription follows the reply.
                    handle.cancel.cancel();
                    let _ = handle.task.await;
                    self.send(&ServerMessage::Unsubscribed { req, sub });
                }
                None => self.error(
                    Some(req),
                    "unknown_subscription",
                    format!("no live subscription {sub} in this session"),
                ),
            },
            ClientMessage::Ping { req } => self.send(&ServerMessage::Pong {
                req,
                server_time: self.ctx.node.registry.clock().now(),
            }),
        }
    }

    fn command(&mut self, req: RequestId, command_id: crate::domain::CommandId, command: Command) {
        let kind = crate::metrics::command_kind(&command);
        if self.principal.role == Role::Spectator {
            self.ctx
                .node
                .metrics
                .command_refused_early(kind, "forbidden");
            return self.error(Some(req), "forbidden", "spectators cannot send commands");
        }
        if !self.commands.take() {
            self.ctx
                .node
                .metrics
                .command_refused_early(kind, "rate_limited");
            return self.error(
                Some(req),
                "rate_limited",
                format!(
                    "more than {} commands per second; slow down and retry with the same command_id",
                    self.ctx.config.commands_per_second
                ),
            );
        }
        self.in_flight.push(Box::pin(requests::command(
            self.ctx.node.clone(),
            self.principal.clone(),
            req,
            command_id,
            command,
            std::time::Instant::now(),
        )));
    }

    async fn subscribe(
        &mut self,
        req: RequestId,
        resource_id: Option<crate::domain::ResourceId>,
        owner: Option<crate::domain::PlayerId>,
        from_version: Option<u64>,
    ) {
        let target = match (resource_id, owner) {
            (Some(id), None) => Target::Resource(id),
            (None, Some(owner)) => {
                if from_version.is_some() {
                    return self.error(
                        Some(req),
                        "bad_message",
                        "from_version applies to a resource_id subscription only",
                    );
                }
                Target::Owner(owner)
            }
            _ => {
                return self.error(
                    Some(req),
                    "bad_message",
                    "give exactly one of resource_id and owner",
                );
            }
        };
        self.subs.retain(|_, s| !s.task.is_finished());
        if self.subs.len() >= self.ctx.config.max_subscriptions {
            return self.error(
                Some(req),
                "too_many_subscriptions",
                format!(
                    "at most {} subscriptions per session",
                    self.ctx.config.max_subscriptions
                ),
            );
        }
        let sub = self.next_sub;
        let cancel = CancellationToken::new();
        let started = subscriptions::start(
            self.ctx.node.clone(),
            &self.principal,
            sub,
            target,
            from_version,
            self.outbox.clone(),
            cancel.clone(),
        )
        .await;
        match started {
            Ok((resources, task)) => {
                self.next_sub += 1;
                // Queued before the task can queue anything: the reply precedes every update.
                self.send(&ServerMessage::Subscribed {
                    req,
                    sub,
                    resources,
                });
                let open = self.ctx.node.metrics.subscription_opened();
                let task = tokio::spawn(async move {
                    let _open = open;
                    task.await
                });
                self.subs.insert(sub, SubHandle { cancel, task });
            }
            Err(SubscribeError::Rejected(code, message)) => self.error(Some(req), code, message),
            Err(SubscribeError::Store(e)) => {
                tracing::warn!(error = %e, "subscribe failed on the store");
                self.error(Some(req), "unavailable", "storage unavailable; retry");
            }
        }
    }
}
