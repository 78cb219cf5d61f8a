//! The actor of one resource: decides its commands in mailbox order and commits them with a
//! version check, several at once when several are waiting (see [`ResourceActor::handle`]).

use crate::actor::registry::Shared;
use crate::actor::{CommandError, CommandReply, CommandRequest};
use crate::bus::Change;
use crate::domain::{
    self, Command, CommandId, EventEnvelope, Principal, Rejection, ResourceId, ServerResource,
};
use crate::store::{AppendError, AppendRequest, CommitRecord, StoreError};
use rand::RngExt;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// A command in the mailbox with the channel its outcome goes back on.
pub(crate) struct Mail {
    pub request: CommandRequest,
    pub reply: oneshot::Sender<Result<CommandReply, CommandError>>,
}

pub(crate) struct ResourceActor {
    id: ResourceId,
    /// Tells this actor's registry slot apart from a later actor's for the same resource.
    generation: u64,
    mailbox: mpsc::Receiver<Mail>,
    shared: Arc<Shared>,
    /// The state as last loaded or committed by this actor; `None` if it does not exist.
    state: Option<ServerResource>,
    /// False until loaded, and again after a conflict or a store error (the store knows better).
    fresh: bool,
}

impl ResourceActor {
    pub fn new(
        id: ResourceId,
        generation: u64,
        is_new: bool,
        mailbox: mpsc::Receiver<Mail>,
        shared: Arc<Shared>,
    ) -> Self {
        // A resource created under a freshly generated id has nothing to load.
        Self {
            id,
            generation,
            mailbox,
            shared,
            state: None,
            fresh: is_new,
        }
    }

    pub async fn run(mut self) {
        let idle_after = self.shared.config.idle_after;
        let shutdown = self.shared.shutdown.clone();
        loop {
            let lock_timer = self.lock_timer();
            tokio::select! {
                mail = self.mailbox.recv() => match mail {
                    Some(mail) => self.handle(mail).await,
                    None => break,
                },
                _ = sleep_or_forever(lock_timer) => self.expire_lock().await,
                _ = tokio::time::sleep(idle_after), if lock_timer.is_none() => {
                    self.shared.metrics.passivated();
                    break;
                }
                _ = shutdown.cancelled() => break,
            }
            if self.fresh && self.state.is_none() {
                // A command for a resource that does not exist: keep no actor around for it.
                break;
            }
        }
        // Leave the registry first so new commands go to a new actor, then finish what is queued.
        self.shared.release(self.id, self.generation);
        self.mailbox.close();
        while let Some(mail) = self.mailbox.recv().await {
            self.handle(mail).await;
        }
    }

    /// How long until the current lock expires, if there is one.
    fn lock_timer(&self) -> Option<Duration> {
        let lock = self.state.as_ref()?.lock.as_ref()?;
        let now = self.shared.clock.now();
        Some(Duration::from_millis(lock.expires_at.ms_since(now)))
    }

    async fn expire_lock(&mut self) {
        let request = CommandRequest {
            command_id: CommandId::new(),
            principal: Principal::system(),
            command: Command::ExpireLock(self.id),
        };
        let (reply, answer) = oneshot::channel();
        self.execute_batch(vec![Mail { request, reply }]).await;
        if let Ok(Err(e)) = answer.await {
            tracing::warn!(resource = %self.id, error = %e, "could not record a lock expiry");
            // Try again later rather than spinning.
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    /// Takes `first` and whatever else waits in the mailbox (up to the pipeline limit) and runs
    /// them as one batch.
    async fn handle(&mut self, first: Mail) {
        let limit = self.shared.config.pipeline.max(1);
        let mut batch = vec![first];
        while batch.len() < limit {
            match self.mailbox.try_recv() {
                Ok(mail) => batch.push(mail),
                Err(_) => break,
            }
        }
        self.execute_batch(batch).await;
    }

    async fn reload(&mut self) -> Result<(), StoreError> {
        self.state = self.shared.store.load(self.id).await?.state();
        self.fresh = true;
        Ok(())
    }

    /// Decides `mails` in order on the state each previous one leads to, appends every command
    /// that produced events in one [`append_many`](crate::store::EventStore::append_many) (one
    /// group commit, one fsync), and answers each command only once its fate is known.
    ///
    /// Exact semantics, as if each command ran alone:
    /// - every command keeps its own command id record, events, change and reply;
    /// - a command's outcome (including a rejection or a no-op) is final only if every command
    ///   before it in the batch committed as decided, since it was decided on their state;
    /// - from the first command that did not (a conflict, a duplicate, a store error), the rest
    ///   are decided again on a reloaded state, with the usual attempt limit and back-off.
    async fn execute_batch(&mut self, mut todo: Vec<Mail>) {
        let max_attempts = self.shared.config.max_attempts.max(1);
        let mut attempt = 0;
        while !todo.is_empty() {
            if attempt >= max_attempts {
                for mail in todo {
                    let _ = mail.reply.send(Err(CommandError::Contention));
                }
                return;
            }
            if attempt > 0 {
                self.shared.metrics.retry();
                let cap = self.shared.config.backoff.as_micros() as u64 * (1 << attempt.min(10));
                let jitter = rand::rng().random_range(0..=cap.max(1));
                tokio::time::sleep(Duration::from_micros(jitter)).await;
            }
            attempt += 1;
            if !self.fresh {
                if let Err(e) = self.reload().await {
                    for mail in todo {
                        let _ = mail.reply.send(Err(e.clone().into()));
                    }
                    return;
                }
            }
            todo = self.attempt(todo).await;
        }
    }

    /// One round of [`execute_batch`](Self::execute_batch): returns the commands to decide again.
    async fn attempt(&mut self, todo: Vec<Mail>) -> Vec<Mail> {
        let now = self.shared.clock.now();
        let every = self.shared.config.snapshot_every.max(1);
        // Decide each command on the state the ones before it lead to.
        let mut speculative = self.state.clone();
        let mut decided = Vec::with_capacity(todo.len());
        let mut appends = Vec::new();
        for mail in &todo {
            let request = &mail.request;
            let outcome = match (&speculative, &request.command) {
                (None, Command::Create(create)) => {
                    domain::decide_create(&self.shared.catalogue, &request.principal, create, now)
                        .map(|e| vec![e])
                }
                (None, _) => Err(Rejection::NotFound(self.id)),
                (Some(state), command) => domain::decide(state, &request.principal, command, now),
            };
            decided.push(match outcome {
                Err(rejection) => Decided::Rejected(rejection),
                Ok(events) if events.is_empty() => Decided::NoOp(
                    speculative
                        .clone()
                        .expect("only existing resources decide no-ops"),
                ),
                Ok(events) => {
                    let base = speculative.as_ref().map_or(0, |s| s.version);
                    let events = domain::stamp(self.id, base, request.command_id, now, events);
                    let next = domain::replay(speculative.take(), &events)
                        .expect("decided events always lead to a state");
                    let snapshot = (next.version / every > base / every).then(|| next.clone());
                    appends.push(AppendRequest {
                        resource_id: self.id,
                        expected_version: base,
                        command_id: request.command_id,
                        events: events.clone(),
                        snapshot,
                    });
                    speculative = Some(next.clone());
                    Decided::Append { events, next }
                }
            });
        }
        let expected = appends.len();
        let mut outcomes = if appends.is_empty() {
            Vec::new()
        } else {
            let started = std::time::Instant::now();
            let outcomes = self.shared.store.append_many(appends).await;
            self.shared.metrics.commit(started.elapsed());
            outcomes
        }
        .into_iter();

        // Settle each command in order; `intact` holds while everything before committed as
        // decided, `stale` once the store may hold more than `self.state`.
        let mut intact = true;
        let mut stale = false;
        let mut again = Vec::new();
        for (mail, decided) in todo.into_iter().zip(decided) {
            let outcome = match decided {
                Decided::Append { events, next } => {
                    let appended = outcomes.next().unwrap_or_else(|| {
                        Err(StoreError::Unavailable(format!(
                            "the store answered fewer than {expected} appends"
                        ))
                        .into())
                    });
                    match appended {
                        Ok(_) => {
                            // Committed, so the state it was decided on was the stored one.
                            self.state = Some(next.clone());
                            self.shared
                                .hub
                                .publish(Arc::new(Change::new(events.clone(), next.clone())));
                            Ok(CommandReply {
                                resource_id: self.id,
                                version: next.version,
                                events,
                                resource: next,
                                duplicate: false,
                            })
                        }
                        Err(AppendError::Conflict { .. }) => {
                            if intact {
                                // The first conflict of the chain (the rest follow from it).
                                self.shared.metrics.conflict();
                            }
                            intact = false;
                            stale = true;
                            again.push(mail);
                            continue;
                        }
                        Err(AppendError::Duplicate(record)) => {
                            // Nothing was written: `self.state` is still the stored state, but
                            // the commands after this one were decided on top of it.
                            intact = false;
                            self.original_outcome(&mail.request, record).await
                        }
                        Err(AppendError::Store(e)) => {
                            // The outcome is unknown to us: reload before the next command.
                            intact = false;
                            stale = true;
                            Err(e.into())
                        }
                    }
                }
                _ if !intact => {
                    again.push(mail);
                    continue;
                }
                Decided::NoOp(state) => Ok(CommandReply {
                    resource_id: self.id,
                    version: state.version,
                    events: Vec::new(),
                    resource: state,
                    duplicate: false,
                }),
                Decided::Rejected(rejection) => self.rejected(&mail.request, rejection).await,
            };
            let _ = mail.reply.send(outcome);
        }
        if stale {
            self.fresh = false;
        }
        again
    }

    /// A rejection, unless the command id already succeeded: a retry of a command that did must
    /// get its first outcome, not a rejection from the state it led to.
    async fn rejected(
        &self,
        request: &CommandRequest,
        rejection: Rejection,
    ) -> Result<CommandReply, CommandError> {
        match self.shared.store.find_command(request.command_id).await? {
            Some(record) => self.original_outcome(request, record).await,
            None => Err(CommandError::Rejected(rejection)),
        }
    }

    /// The outcome a command id produced the first time, rebuilt from the log.
    async fn original_outcome(
        &self,
        request: &CommandRequest,
        record: CommitRecord,
    ) -> Result<CommandReply, CommandError> {
        let same_target = match request.command.resource_id() {
            Some(id) => id == record.resource_id,
            // A create's resource id was chosen by the first attempt. Only a create commits a
            // resource's first version, so a record starting later belongs to another command.
            None => record.first_version == 1,
        };
        if !same_target {
            return Err(CommandError::CommandIdReused);
        }
        let history = self
            .shared
            .store
            .events(record.resource_id, 0, record.last_version as usize)
            .await?;
        let resource = domain::replay(None, &history)
            .ok_or_else(|| StoreError::Corrupt(format!("no events for {}", record.resource_id)))?;
        if !request.principal.is_trusted() && resource.owner != request.principal.player {
            // Someone else's command id: answering would show them another player's resource.
            return Err(CommandError::CommandIdReused);
        }
        let events = history
            .into_iter()
            .filter(|e| e.version >= record.first_version)
            .collect();
        Ok(CommandReply {
            resource_id: record.resource_id,
            version: record.last_version,
            events,
            resource,
            duplicate: true,
        })
    }
}

/// What deciding one command of a batch produced, before the store has answered.
enum Decided {
    /// Events to append, and the state they lead to.
    Append {
        events: Vec<EventEnvelope>,
        next: ServerResource,
    },
    /// Nothing to record; the reply shows this state.
    NoOp(ServerResource),
    Rejected(Rejection),
}

async fn sleep_or_forever(d: Option<Duration>) {
    match d {
        Some(d) => tokio::time::sleep(d).await,
        None => std::future::pending().await,
    }
}
