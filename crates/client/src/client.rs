//! [`Client`]: a handle to one logical session with a Warden server. A background task owns the
//! socket of the current connection: it writes requests, matches replies to callers by `req`, and
//! routes `update`s to subscriptions. Callers await their replies; any number may be in flight.
//!
//! # Drops, retries and resume
//!
//! The client never reconnects on its own. When the connection ends, every request waiting on it
//! fails with [`ClientError::Closed`], subscriptions stay registered (their streams just go quiet)
//! and [`Client::closed`] resolves. [`Client::reconnect`] then opens a new connection (trying for
//! [`ClientConfig::reconnect_window`]) and resumes every subscription: a resource subscription
//! with `from_version` = the last version received, an owner subscription anew, its current views
//! delivered as updates. [`Client::execute_retrying`] does this for a command: on an unknown
//! outcome it reconnects (after a drop) or waits (after `conflict`, `rate_limited`, …) and sends
//! the **same** command, same id, again.
//!
//! One explicit call instead of a reconnect loop hidden in the task keeps every decision (how long
//! to try, whether a token must be renewed, what a game shows meanwhile) with the caller, and a
//! request never silently outlives its caller's timeout.

use crate::command::{Applied, Command};
use crate::config::ClientConfig;
use crate::connection::{Connection, Welcome};
use crate::error::{ClientError, CloseInfo};
use crate::subscription::{LocalSub, Registry, Subscription, Target, Update};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_tungstenite::tungstenite::Bytes;
use warden_protocol::{
    ClientMessage, ClientResource, CommandId, ErrorCode, Get, History, HistoryEvent, List, Ping,
    PlayerId, RequestId, ResourceId, ServerMessage, StateAt, Subscribe, Timestamp, Unsubscribe,
};

mod reads;
mod task;

pub use reads::{At, PastState};
use task::spawn_link;

/// Requests written in one go before the socket is flushed.
const WRITE_BATCH: usize = 64;

/// A request on its way to the connection's task.
struct Outgoing {
    req: RequestId,
    frame: Bytes,
    /// `None` for a request nobody waits on (an unsubscribe from a drop).
    reply: Option<oneshot::Sender<Result<ServerMessage, ClientError>>>,
    /// For a `subscribe`: the subscription its `subscribed` binds.
    subscribe_for: Option<LocalSub>,
}

/// One connection: the way to its task, and how it ended.
struct Link {
    /// Connections of this client so far, counting from 0.
    epoch: u64,
    welcome: Welcome,
    tx: mpsc::UnboundedSender<Outgoing>,
    /// Set by the task when the connection ends, before it fails the requests waiting on it.
    closed: watch::Receiver<Option<CloseInfo>>,
    /// Asks the task to close the connection normally.
    close: Mutex<Option<oneshot::Sender<()>>>,
}

impl Link {
    fn is_open(&self) -> bool {
        self.closed.borrow().is_none() && !self.tx.is_closed()
    }

    fn close_error(&self) -> ClientError {
        match &*self.closed.borrow() {
            Some(info) => info.to_error(),
            None => ClientError::Closed {
                code: None,
                reason: "connection lost".into(),
            },
        }
    }
}

/// What every [`Client`] handle shares (and a [`Subscription`] reaches weakly).
pub(crate) struct Inner {
    url: String,
    token: String,
    config: ClientConfig,
    next_req: AtomicU64,
    link: Mutex<Arc<Link>>,
    /// One reconnect (and resume) at a time.
    reconnecting: tokio::sync::Mutex<()>,
    registry: Arc<Registry>,
}

impl Inner {
    fn link(&self) -> Arc<Link> {
        self.link.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub(crate) fn current_epoch(&self) -> u64 {
        self.link().epoch
    }

    /// Sends `build(req)` on `link` and waits for its reply; an `error` reply is
    /// [`ClientError::Refused`].
    async fn request_on(
        &self,
        link: &Link,
        build: impl FnOnce(RequestId) -> ClientMessage,
        subscribe_for: Option<LocalSub>,
    ) -> Result<ServerMessage, ClientError> {
        let req = self.next_req.fetch_add(1, Ordering::Relaxed);
        let frame = Bytes::from(warden_protocol::encode(&build(req)));
        let (tx, rx) = oneshot::channel();
        link.tx
            .send(Outgoing {
                req,
                frame,
                reply: Some(tx),
                subscribe_for,
            })
            .map_err(|_| link.close_error())?;
        match tokio::time::timeout(self.config.request_timeout, rx).await {
            Err(_) => Err(ClientError::Timeout(self.config.request_timeout)),
            Ok(Err(_)) => Err(link.close_error()),
            Ok(Ok(Err(e))) => Err(e),
            Ok(Ok(Ok(ServerMessage::Error { code, message, .. }))) => {
                Err(ClientError::Refused { code, message })
            }
            Ok(Ok(Ok(msg))) => Ok(msg),
        }
    }

    /// Ends server subscription `sub` of connection `epoch` and waits for the answer.
    pub(crate) async fn unsubscribe(&self, epoch: u64, sub: u64) -> Result<(), ClientError> {
        let link = self.link();
        if link.epoch != epoch || !link.is_open() {
            return Ok(());
        }
        let reply = self
            .request_on(
                &link,
                |req| ClientMessage::Unsubscribe(Unsubscribe { req, sub }),
                None,
            )
            .await;
        match reply {
            Ok(ServerMessage::Unsubscribed { .. }) => Ok(()),
            Err(ClientError::Refused {
                code: ErrorCode::UnknownSubscription,
                ..
            }) => Ok(()),
            Err(ClientError::Closed { .. }) => Ok(()),
            Err(e) => Err(e),
            Ok(other) => Err(unexpected("unsubscribed", &other)),
        }
    }

    /// Ends server subscription `sub` of connection `epoch` without waiting (from a drop).
    pub(crate) fn unsubscribe_in_background(&self, epoch: u64, sub: u64) {
        let link = self.link();
        if link.epoch != epoch {
            return;
        }
        let req = self.next_req.fetch_add(1, Ordering::Relaxed);
        let frame = Bytes::from(warden_protocol::encode(&ClientMessage::Unsubscribe(
            Unsubscribe { req, sub },
        )));
        let _ = link.tx.send(Outgoing {
            req,
            frame,
            reply: None,
            subscribe_for: None,
        });
    }

    /// Subscribes again, on `link`, every established subscription not live on it.
    async fn resume(&self, link: &Link) -> Result<(), ClientError> {
        let pending = self.registry.to_resume(link.epoch);
        let attempts = pending.into_iter().map(|r| async move {
            let reply = self
                .request_on(
                    link,
                    |req| subscribe_message(req, &r.target, r.from_version),
                    Some(r.local),
                )
                .await?;
            match reply {
                ServerMessage::Subscribed { .. } => Ok(()),
                other => Err(unexpected("subscribed", &other)),
            }
        });
        futures::future::join_all(attempts)
            .await
            .into_iter()
            .find_map(Result::err)
            .map_or(Ok(()), Err)
    }
}

/// A connection to a Warden server, shared by cheap clones: see the [crate docs](crate) for an
/// example and the module notes on [drops, retries and resume](Client::reconnect).
///
/// Every method takes `&self`; requests from many tasks are pipelined on the one connection and
/// each reply goes to its caller. Needs a Tokio runtime (the connection's task is spawned on it).
/// Dropping the last handle closes the connection.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let link = self.inner.link();
        f.debug_struct("Client")
            .field("url", &self.inner.url)
            .field("player", &link.welcome.player)
            .field("connection", &link.epoch)
            .field("open", &link.is_open())
            .finish_non_exhaustive()
    }
}

impl Client {
    /// Connects to `url` (`ws://host:port`; `/v1` is added when there is no path) with `token`
    /// and waits for `welcome`. The token is sent as `Authorization: Bearer`.
    pub async fn connect(url: &str, token: &str) -> Result<Client, ClientError> {
        Self::connect_with(url, token, ClientConfig::default()).await
    }

    /// [`connect`](Self::connect) with settings other than the defaults.
    pub async fn connect_with(
        url: &str,
        token: &str,
        config: ClientConfig,
    ) -> Result<Client, ClientError> {
        let conn = Connection::connect_with(url, token, &config).await?;
        Ok(Self::from_connection(conn, url, token, config))
    }

    /// A client on a connection opened already (e.g. with
    /// [`Connection::connect_patiently`]); `url` and `token` are what
    /// [`reconnect`](Self::reconnect) uses.
    pub fn from_connection(conn: Connection, url: &str, token: &str, config: ClientConfig) -> Self {
        let registry = Arc::new(Registry::default());
        let link = spawn_link(conn, 0, registry.clone());
        Client {
            inner: Arc::new(Inner {
                url: url.to_owned(),
                token: token.to_owned(),
                config,
                next_req: AtomicU64::new(1),
                link: Mutex::new(link),
                reconnecting: tokio::sync::Mutex::new(()),
                registry,
            }),
        }
    }

    /// The `welcome` of the current connection: who the server says this is, and its limits.
    pub fn welcome(&self) -> Welcome {
        self.inner.link().welcome.clone()
    }

    /// The settings this client was made with.
    pub fn config(&self) -> &ClientConfig {
        &self.inner.config
    }

    /// Whether the current connection is open.
    pub fn is_connected(&self) -> bool {
        self.inner.link().is_open()
    }

    /// Waits until the current connection ends, and says how (a
    /// [`ClientError::Closed`]). Resolves at once if it has ended already. A program that only
    /// listens to subscriptions waits on this beside them to know when to
    /// [`reconnect`](Self::reconnect).
    pub async fn closed(&self) -> ClientError {
        let link = self.inner.link();
        let mut watch = link.closed.clone();
        let _ = watch.wait_for(Option::is_some).await;
        link.close_error()
    }

    /// Makes sure the client is connected, and every subscription live on that connection.
    ///
    /// If the current connection is open, nothing is reopened. Otherwise a new one is opened with
    /// the same URL and token, trying with back-off for [`ClientConfig::reconnect_window`] (a
    /// refused upgrade, e.g. an expired token, ends the trying at once). Then every subscription
    /// not live on it is subscribed again: a resource subscription with `from_version` = the last
    /// version received (the server sends exactly the changes after it, then live ones); an owner
    /// subscription anew, each view newer than the last one received delivered as an
    /// [`Update`]. The first error is returned; a subscription that could not be resumed is
    /// tried again by the next call. Concurrent calls do the work once.
    pub async fn reconnect(&self) -> Result<(), ClientError> {
        self.reconnect_and_resume().await?
    }

    /// [`reconnect`](Self::reconnect), with its two failures apart: the outer error is the
    /// connection's, the inner one a subscription's resume.
    async fn reconnect_and_resume(&self) -> Result<Result<(), ClientError>, ClientError> {
        let inner = &self.inner;
        let _one_at_a_time = inner.reconnecting.lock().await;
        let current = inner.link();
        let link = if current.is_open() {
            current
        } else {
            let conn = Connection::connect_patiently(
                &inner.url,
                &inner.token,
                &inner.config,
                inner.config.reconnect_window,
                |_| {},
            )
            .await?;
            let link = spawn_link(conn, current.epoch + 1, inner.registry.clone());
            *inner.link.lock().unwrap_or_else(|e| e.into_inner()) = link.clone();
            link
        };
        Ok(inner.resume(&link).await)
    }

    /// Closes the current connection normally (requests waiting on it fail with
    /// [`ClientError::Closed`]). [`reconnect`](Self::reconnect) opens a new one.
    pub async fn close(&self) {
        let link = self.inner.link();
        let tx = link.close.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(tx) = tx {
            let _ = tx.send(());
        }
        let _ = self.closed().await;
    }

    /// Sends the message `build(req)` (with a request id chosen by the client) and returns the
    /// reply carrying that `req`; an `error` reply is [`ClientError::Refused`]. For messages this
    /// crate has no method for. A `subscribe` sent this way is not tracked: its updates are
    /// dropped (use [`subscribe_resource`](Self::subscribe_resource) and
    /// [`subscribe_owner`](Self::subscribe_owner)).
    pub async fn request(
        &self,
        build: impl FnOnce(RequestId) -> ClientMessage,
    ) -> Result<ServerMessage, ClientError> {
        let link = self.inner.link();
        self.inner.request_on(&link, build, None).await
    }

    /// A round trip; returns the server's clock.
    pub async fn ping(&self) -> Result<Timestamp, ClientError> {
        match self
            .request(|req| ClientMessage::Ping(Ping { req }))
            .await?
        {
            ServerMessage::Pong { server_time, .. } => Ok(server_time),
            other => Err(unexpected("pong", &other)),
        }
    }

    // ------------------------------------------------------------------ commands

    /// Sends `command` once and returns the server's `applied`.
    ///
    /// On an error with [`is_unknown_outcome`](ClientError::is_unknown_outcome), send the same
    /// `command` again (after [`reconnect`](Self::reconnect) if the connection dropped), or let
    /// [`execute_retrying`](Self::execute_retrying) do it.
    pub async fn execute(&self, command: &Command) -> Result<Applied, ClientError> {
        match self.request(|req| command.to_message(req)).await? {
            ServerMessage::Applied {
                command_id,
                resource_id,
                version,
                resource,
                duplicate,
                existing,
                ..
            } => Ok(Applied {
                command_id,
                resource_id,
                version,
                resource,
                duplicate,
                existing,
            }),
            other => Err(unexpected("applied", &other)),
        }
    }

    /// Sends `command` until it has an outcome, at most [`RetryPolicy::max_attempts`] times, each
    /// time with its same id, so it applies at most once whatever happens to the connection.
    ///
    /// After a dropped connection it [`reconnect`](Self::reconnect)s first (a failure to connect
    /// is returned: the command's outcome is then unknown, and it may be sent again later, same
    /// id; a subscription that could not be resumed is left for the next `reconnect`);
    /// after `unavailable`, `conflict`, `rate_limited`, `shutting_down` or `storage_full` it waits
    /// ([`RetryPolicy::backoff`]); after a timeout it resends at once. A definite refusal
    /// (`insufficient`, `locked`, `forbidden`, …) is returned at once, never retried.
    ///
    /// [`RetryPolicy::max_attempts`]: crate::RetryPolicy::max_attempts
    /// [`RetryPolicy::backoff`]: crate::RetryPolicy::backoff
    pub async fn execute_retrying(&self, command: &Command) -> Result<Applied, ClientError> {
        let policy = &self.inner.config.retry;
        let mut attempt = 1;
        loop {
            let err = match self.execute(command).await {
                Ok(applied) => return Ok(applied),
                Err(e) => e,
            };
            if attempt >= policy.max_attempts.max(1) {
                return Err(err);
            }
            match &err {
                // A subscription that could not be resumed is not this command's failure: it
                // stays for the next `reconnect()` (see `Subscription::is_live`).
                ClientError::Closed { .. } => {
                    let _resumed = self.reconnect_and_resume().await?;
                }
                ClientError::Refused { .. } if err.is_unknown_outcome() => {
                    tokio::time::sleep(policy.backoff(attempt)).await;
                }
                ClientError::Timeout(_) => {}
                _ => return Err(err),
            }
            attempt += 1;
        }
    }

    /// Creates a resource of catalogue type `resource_type` for the caller, once: with the same
    /// `command_id`, a resend is the same command.
    pub async fn create(
        &self,
        command_id: CommandId,
        resource_type: &str,
    ) -> Result<Applied, ClientError> {
        self.execute(&Command::create(resource_type).with_id(command_id))
            .await
    }

    /// Spends `amount` of `resource_id`, once (see [`create`](Self::create) on `command_id`).
    pub async fn allocate(
        &self,
        command_id: CommandId,
        resource: impl Into<ResourceId>,
        amount: u64,
        reason: &str,
    ) -> Result<Applied, ClientError> {
        let resource_id = resource.into();
        self.execute(&Command::allocate(resource_id, amount, reason).with_id(command_id))
            .await
    }

    /// Adds `amount` to `resource_id`, once (see [`create`](Self::create) on `command_id`).
    pub async fn add(
        &self,
        command_id: CommandId,
        resource: impl Into<ResourceId>,
        amount: u64,
        reason: &str,
    ) -> Result<Applied, ClientError> {
        let resource_id = resource.into();
        self.execute(&Command::add(resource_id, amount, reason).with_id(command_id))
            .await
    }

    /// Locks `resource_id` for `duration`, once (see [`create`](Self::create) on `command_id`).
    pub async fn lock(
        &self,
        command_id: CommandId,
        resource: impl Into<ResourceId>,
        reason: &str,
        duration: Duration,
    ) -> Result<Applied, ClientError> {
        let resource_id = resource.into();
        self.execute(&Command::lock(resource_id, reason, duration).with_id(command_id))
            .await
    }

    /// Unlocks `resource_id`, once (see [`create`](Self::create) on `command_id`).
    pub async fn unlock(
        &self,
        command_id: CommandId,
        resource: impl Into<ResourceId>,
    ) -> Result<Applied, ClientError> {
        let resource_id = resource.into();
        self.execute(&Command::unlock(resource_id).with_id(command_id))
            .await
    }

    // ------------------------------------------------------------------ reads

    /// Follows one resource. Without `from_version`, the [`Subscription::snapshot`] holds its
    /// current view and updates follow from there; with it, exactly the changes after that version
    /// come first (from the log), then live ones.
    pub async fn subscribe_resource(
        &self,
        resource: impl Into<ResourceId>,
        from_version: Option<u64>,
    ) -> Result<Subscription, ClientError> {
        let resource_id = resource.into();
        self.subscribe(Target::Resource(resource_id), from_version)
            .await
    }

    /// Follows every resource of `owner`, including ones created later (their first update has
    /// `base_version` 0). The [`Subscription::snapshot`] holds the current views.
    pub async fn subscribe_owner(&self, owner: PlayerId) -> Result<Subscription, ClientError> {
        self.subscribe(Target::Owner(owner), None).await
    }

    async fn subscribe(
        &self,
        target: Target,
        from_version: Option<u64>,
    ) -> Result<Subscription, ClientError> {
        let inner = &self.inner;
        let (local, rx) = inner.registry.add(target.clone(), from_version);
        let link = inner.link();
        let reply = inner
            .request_on(
                &link,
                |req| subscribe_message(req, &target, from_version),
                Some(local),
            )
            .await;
        match reply {
            Ok(ServerMessage::Subscribed { resources, .. }) => Ok(Subscription {
                local,
                snapshot: resources,
                rx,
                client: Arc::downgrade(inner),
                registry: Arc::downgrade(&inner.registry),
                ended: false,
            }),
            // (A `subscribed` after a timeout finds no subscription to bind: its updates are
            // dropped until the connection ends.)
            Ok(other) => {
                inner.registry.remove(local);
                Err(unexpected("subscribed", &other))
            }
            Err(e) => {
                inner.registry.remove(local);
                Err(e)
            }
        }
    }
}

fn subscribe_message(req: RequestId, target: &Target, from_version: Option<u64>) -> ClientMessage {
    let (resource_id, owner) = match target {
        Target::Resource(id) => (Some(*id), None),
        Target::Owner(owner) => (None, Some(owner.clone())),
    };
    ClientMessage::Subscribe(Subscribe {
        req,
        resource_id,
        owner,
        from_version,
    })
}

fn unexpected(expected: &str, got: &ServerMessage) -> ClientError {
    ClientError::Protocol(format!(
        "expected {expected}, got {}",
        ServerMessage::TYPES[got.type_index()]
    ))
}
