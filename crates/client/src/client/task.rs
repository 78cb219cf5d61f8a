//! The task that owns one connection's socket: it writes requests (batched), matches replies to
//! their callers by `req`, and routes `update`s to subscriptions by `sub`.

use super::*;

/// Starts the task of connection number `epoch`.
pub(super) fn spawn_link(conn: Connection, epoch: u64, registry: Arc<Registry>) -> Arc<Link> {
    let (tx, rx) = mpsc::unbounded_channel();
    let (closed_tx, closed) = watch::channel(None);
    let (close_tx, close_rx) = oneshot::channel();
    let welcome = conn.welcome().clone();
    let task = Task {
        epoch,
        registry,
        waiting: HashMap::new(),
        routes: HashMap::new(),
        clean_at: 64,
    };
    tokio::spawn(task.run(conn, rx, close_rx, closed_tx));
    Arc::new(Link {
        epoch,
        welcome,
        tx,
        closed,
        close: Mutex::new(Some(close_tx)),
    })
}

/// A request written and not yet answered.
struct Waiting {
    reply: oneshot::Sender<Result<ServerMessage, ClientError>>,
    subscribe_for: Option<LocalSub>,
}

/// The owner of one connection's socket.
struct Task {
    epoch: u64,
    registry: Arc<Registry>,
    waiting: HashMap<RequestId, Waiting>,
    /// The server's `sub` → the subscription it feeds.
    routes: HashMap<u64, LocalSub>,
    /// Size of `waiting` at which replies nobody waits for any more (timed out) are forgotten.
    clean_at: usize,
}

/// Why the loop of a [`Task`] stopped.
enum Stop {
    /// The connection failed or the server closed it.
    Lost(CloseInfo),
    /// This side closes it: the client asked, was dropped, or gave up on the session.
    Close(CloseInfo),
}

/// Enough of a message to find its request, when the whole of it cannot be decoded.
#[derive(serde::Deserialize)]
struct ReqOnly {
    #[serde(default)]
    req: Option<RequestId>,
}

impl Task {
    async fn run(
        mut self,
        mut conn: Connection,
        mut rx: mpsc::UnboundedReceiver<Outgoing>,
        mut close_rx: oneshot::Receiver<()>,
        closed: watch::Sender<Option<CloseInfo>>,
    ) {
        let by_client = |reason: &str| {
            Stop::Close(CloseInfo {
                code: None,
                reason: reason.into(),
            })
        };
        let stop = loop {
            tokio::select! {
                out = rx.recv() => match out {
                    Some(out) => {
                        if let Err(e) = self.write(&mut conn, out, &mut rx).await {
                            break Stop::Lost(CloseInfo::from_error(e));
                        }
                    }
                    None => break by_client("the client was dropped"),
                },
                _ = &mut close_rx => break by_client("closed by the client"),
                frame = conn.recv_frame() => match frame {
                    Ok(frame) => {
                        if let Err(info) = self.on_frame(&frame) {
                            break Stop::Close(info);
                        }
                    }
                    Err(e) => break Stop::Lost(CloseInfo::from_error(e)),
                },
            }
        };
        let info = match stop {
            Stop::Lost(info) => info,
            Stop::Close(info) => {
                conn.close().await;
                info
            }
        };
        // In this order: whoever sees a request fail already finds the connection closed.
        closed.send_replace(Some(info.clone()));
        self.registry.unbind_epoch(self.epoch);
        for (_, w) in self.waiting.drain() {
            let _ = w.reply.send(Err(info.to_error()));
        }
        rx.close();
        while let Ok(out) = rx.try_recv() {
            if let Some(reply) = out.reply {
                let _ = reply.send(Err(info.to_error()));
            }
        }
    }

    /// Writes `first` and whatever else is queued (up to a batch), then flushes once.
    async fn write(
        &mut self,
        conn: &mut Connection,
        first: Outgoing,
        rx: &mut mpsc::UnboundedReceiver<Outgoing>,
    ) -> Result<(), ClientError> {
        self.feed(conn, first).await?;
        for _ in 1..WRITE_BATCH {
            match rx.try_recv() {
                Ok(out) => self.feed(conn, out).await?,
                Err(_) => break,
            }
        }
        conn.flush().await
    }

    async fn feed(&mut self, conn: &mut Connection, out: Outgoing) -> Result<(), ClientError> {
        if let Some(reply) = out.reply {
            if self.waiting.len() >= self.clean_at {
                self.waiting.retain(|_, w| !w.reply.is_closed());
                self.clean_at = (self.waiting.len() * 2).max(64);
            }
            self.waiting.insert(
                out.req,
                Waiting {
                    reply,
                    subscribe_for: out.subscribe_for,
                },
            );
        }
        conn.feed_frame(out.frame).await
    }

    /// Routes one frame from the server. An error means the session must end (a subscription
    /// failed: the connection is closed so that a reconnect resumes every subscription).
    fn on_frame(&mut self, frame: &[u8]) -> Result<(), CloseInfo> {
        let msg = match warden_protocol::decode::<ServerMessage>(frame) {
            Ok(msg) => msg,
            Err(e) => {
                // A reply this client cannot read fails its request instead of timing it out.
                if let Ok(ReqOnly { req: Some(req) }) = warden_protocol::decode::<ReqOnly>(frame)
                    && let Some(w) = self.waiting.remove(&req)
                {
                    let _ = w.reply.send(Err(ClientError::Decode(e.to_string())));
                }
                return Ok(());
            }
        };
        match msg {
            ServerMessage::Update {
                sub,
                resource_id,
                base_version,
                version,
                resource,
            } => {
                if let Some(local) = self.routes.get(&sub) {
                    self.registry.deliver(
                        *local,
                        Update {
                            resource_id,
                            base_version,
                            version,
                            resource,
                        },
                    );
                }
                Ok(())
            }
            ServerMessage::Error {
                req: None,
                code: ErrorCode::SubscriptionFailed,
                message,
            } => Err(CloseInfo {
                code: None,
                reason: format!("subscription_failed: {message} (reconnect to resume)"),
            }),
            msg => {
                if let ServerMessage::Unsubscribed { sub, .. } = &msg {
                    self.routes.remove(sub);
                }
                let Some(w) = msg.req().and_then(|req| self.waiting.remove(&req)) else {
                    return Ok(());
                };
                if let (Some(local), ServerMessage::Subscribed { sub, resources, .. }) =
                    (w.subscribe_for, &msg)
                {
                    // Before the next frame is read: no update of `sub` can come first.
                    self.routes.insert(*sub, local);
                    self.registry.bind(local, self.epoch, *sub, resources);
                }
                let _ = w.reply.send(Ok(msg));
                Ok(())
            }
        }
    }
}
