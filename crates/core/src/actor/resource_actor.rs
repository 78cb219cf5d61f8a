//! The actor of one resource: decides its commands in mailbox order and commits them with a
//! version check, several at once when several are waiting (see [`ResourceActor::handle`]).

use crate::actor::{ActorEnv, CommandError, CommandReply, CommandRequest};
use crate::domain::{
    self, Command, CommandId, CommandKind, EventEnvelope, Principal, Rejection, ResourceEvent,
    ResourceId, ServerResource, Timestamp,
};
use crate::hub::Change;
use crate::metrics::Outcome;
use crate::store::{AppendError, AppendRequest, CommitRecord, StoreError};
use foldhash::{HashMap, HashMapExt};
use rand::RngExt;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

mod resend;

use resend::InFlight;

/// A command in the mailbox with the channel its outcome goes back on.
pub(crate) struct Mail {
    pub request: CommandRequest,
    pub reply: oneshot::Sender<Result<CommandReply, CommandError>>,
}

pub(crate) struct ResourceActor {
    id: ResourceId,
    mailbox: mpsc::Receiver<Mail>,
    /// What every actor of the registry reads.
    env: Arc<ActorEnv>,
    /// Takes this actor out of its registry (so new commands go to a new actor); called once,
    /// when it stops taking new commands.
    release: Option<Box<dyn FnOnce() + Send + Sync>>,
    /// The state as last loaded or committed by this actor; `None` if it does not exist.
    state: Option<ServerResource>,
    /// False until loaded, and again after a conflict or a store error (the store knows better).
    fresh: bool,
}

impl ResourceActor {
    pub(super) fn new(
        id: ResourceId,
        is_new: bool,
        mailbox: mpsc::Receiver<Mail>,
        env: Arc<ActorEnv>,
        release: Box<dyn FnOnce() + Send + Sync>,
    ) -> Self {
        // An actor started by a create assumes its wallet is new and skips the load: if the
        // wallet exists after all, the store refuses version 1 (a conflict), the actor loads, and
        // the create is answered with the wallet as it is.
        Self {
            id,
            mailbox,
            env,
            release: Some(release),
            state: None,
            fresh: is_new,
        }
    }

    pub(super) async fn run(mut self) {
        let idle_after = self.env.config.idle_after;
        let shutdown = self.env.shutdown.clone();
        // One idle timer and one shutdown wait for the actor's life, not one per command: the
        // timer is only re-armed when it fires early, to the last activity + `idle_after`.
        let mut active_at = Instant::now();
        let idle = tokio::time::sleep_until(active_at + idle_after);
        tokio::pin!(idle);
        let cancelled = shutdown.cancelled();
        tokio::pin!(cancelled);
        loop {
            let lock_timer = self.lock_timer();
            tokio::select! {
                mail = self.mailbox.recv() => match mail {
                    Some(mail) => self.handle(mail).await,
                    None => break,
                },
                _ = sleep_or_forever(lock_timer) => self.expire_lock().await,
                _ = &mut idle, if lock_timer.is_none() => {
                    let due = active_at + idle_after;
                    if Instant::now() >= due {
                        self.env.metrics.passivated();
                        break;
                    }
                    idle.as_mut().reset(due);
                    continue;
                }
                _ = &mut cancelled => break,
            }
            active_at = Instant::now();
            if self.fresh && self.state.is_none() {
                // A command for a resource that does not exist: keep no actor around for it.
                break;
            }
        }
        // Leave the registry first so new commands go to a new actor, then finish what is queued.
        if let Some(release) = self.release.take() {
            release();
        }
        self.mailbox.close();
        while let Some(mail) = self.mailbox.recv().await {
            self.handle(mail).await;
        }
    }

    /// How long until the current lock expires, if there is one.
    fn lock_timer(&self) -> Option<Duration> {
        let lock = self.state.as_ref()?.lock.as_ref()?;
        let now = self.env.clock.now();
        Some(Duration::from_millis(lock.expires_at.ms_since(now)))
    }

    async fn expire_lock(&mut self) {
        let request = CommandRequest {
            command_id: CommandId::new(),
            principal: Principal::system(),
            command: Command::ExpireLock(self.id),
        };
        let (reply, answer) = oneshot::channel();
        let started = std::time::Instant::now();
        self.execute_batch(vec![Mail { request, reply }]).await;
        match answer.await {
            // Counted when an expiry was recorded (not when the lock had already gone).
            Ok(Ok(reply)) if !reply.events.is_empty() => {
                self.env
                    .metrics
                    .command(CommandKind::ExpireLock, Outcome::Applied, started)
            }
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                tracing::warn!(resource = %self.id, error = %e, "could not record a lock expiry");
                // Try again later rather than spinning.
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(_) => {}
        }
    }

    /// Takes `first` and whatever else waits in the mailbox (up to the pipeline limit) and runs
    /// them as one batch.
    async fn handle(&mut self, first: Mail) {
        let limit = self.env.config.pipeline.max(1);
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
        self.state = self.env.store.load(self.id).await?.state();
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
    /// - from the first command that did not, the rest are decided again: after a conflict or a
    ///   store error on a reloaded state, with the usual attempt limit and back-off; after a
    ///   duplicate (a resend of a committed command) at once, the resends among them answered
    ///   first (see [`attempt`](Self::attempt));
    /// - copies of one command in the batch (same id, sender and command: a client's resends
    ///   while the first is in flight) are decided once; the copies get its outcome, as a
    ///   duplicate.
    async fn execute_batch(&mut self, todo: Vec<Mail>) {
        let (todo, copies) = InFlight::collapse(todo);
        let max_attempts = self.env.config.max_attempts.max(1);
        // Rounds lost to contention (a conflict or a store error) so far.
        let mut contended_rounds = 0;
        let mut todo = todo;
        while !todo.is_empty() {
            if !self.fresh
                && let Err(e) = self.reload().await
            {
                for mail in todo {
                    let _ = mail.reply.send(Err(e.clone().into()));
                }
                break;
            }
            let contended;
            (todo, contended) = self.attempt(todo).await;
            if todo.is_empty() || !contended {
                continue;
            }
            contended_rounds += 1;
            if contended_rounds >= max_attempts {
                for mail in todo {
                    let _ = mail.reply.send(Err(CommandError::Contention));
                }
                break;
            }
            self.env.metrics.retry();
            let cap = self.env.config.backoff.as_micros() as u64 * (1 << contended_rounds.min(10));
            let jitter = rand::rng().random_range(0..=cap.max(1));
            tokio::time::sleep(Duration::from_micros(jitter)).await;
        }
        copies.answer();
    }

    /// One round of [`execute_batch`](Self::execute_batch): returns the commands to decide again,
    /// and whether that is because of contention (a conflict or a store error: back off first).
    ///
    /// When the run broke on a duplicate instead, nothing was written from it on and
    /// `self.state` is still the stored state; the commands after it are looked up at once
    /// ([`find_commands`](crate::store::EventStore::find_commands)), those already committed
    /// (more resends) are answered with their first outcome, and the rest go back to be decided
    /// again without back-off. A batch of resends thus settles in one or two rounds.
    async fn attempt(&mut self, todo: Vec<Mail>) -> (Vec<Mail>, bool) {
        let now = self.env.clock.now();
        let (decided, appends) = self.decide_run(&todo, now);
        let mut outcomes = if appends.is_empty() {
            Vec::new()
        } else {
            let started = std::time::Instant::now();
            let outcomes = self.env.store.append_many(appends).await;
            self.env.metrics.commit(started.elapsed());
            outcomes
        }
        .into_iter();

        // Settle each command in order.
        let mut round = Round {
            intact: true,
            ..Round::default()
        };
        for (mail, decided) in todo.into_iter().zip(decided) {
            let outcome = match decided {
                Decided::Append { events, next } => {
                    let appended = outcomes.next().unwrap_or_else(|| {
                        Err(StoreError::NoOutcome(
                            "the store answered fewer appends than it was given",
                        )
                        .into())
                    });
                    match self
                        .settle_append(&mail, events, next, appended, &mut round)
                        .await
                    {
                        Some(outcome) => outcome,
                        None => {
                            round.again.push(mail);
                            continue;
                        }
                    }
                }
                _ if !round.intact => {
                    round.again.push(mail);
                    continue;
                }
                Decided::NoOp(state) => Ok(CommandReply {
                    existing: false,
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
        if round.stale {
            self.fresh = false;
            return (round.again, true);
        }
        if round.broke_on_duplicate && !round.again.is_empty() {
            return (self.answer_resends(round.again).await, false);
        }
        (round.again, false)
    }

    /// Decides each command of `todo` on the state the ones before it lead to; returns what
    /// each decided and the appends of those that produced events, in order.
    fn decide_run(&self, todo: &[Mail], now: Timestamp) -> (Vec<Decided>, Vec<AppendRequest>) {
        let mut speculative = self.state.clone();
        let mut decided = Vec::with_capacity(todo.len());
        let mut appends = Vec::new();
        for (i, mail) in todo.iter().enumerate() {
            let request = &mail.request;
            let outcome = match (&speculative, &request.command) {
                (None, Command::Create(create)) => {
                    domain::decide_create(&self.env.catalogue, &request.principal, create, now)
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
                    let events = domain::stamp(
                        self.id,
                        base,
                        request.command_id,
                        request.principal.role,
                        now,
                        events,
                    );
                    let next = domain::replay(speculative.take(), &events)
                        .expect("decided events always lead to a state");
                    appends.push(AppendRequest {
                        resource_id: self.id,
                        expected_version: base,
                        command_id: request.command_id,
                        events: events.clone(),
                        state: next.clone(),
                    });
                    if i + 1 < todo.len() {
                        // The next command is decided on this one's outcome.
                        speculative = Some(next.clone());
                    }
                    Decided::Append { events, next }
                }
            });
        }
        (decided, appends)
    }

    /// The outcome of one decided append, given the store's answer; `None` when the command is
    /// to be decided again. Publishes what committed.
    async fn settle_append(
        &mut self,
        mail: &Mail,
        events: Vec<EventEnvelope>,
        next: ServerResource,
        appended: Result<CommitRecord, AppendError>,
        round: &mut Round,
    ) -> Option<Result<CommandReply, CommandError>> {
        match appended {
            Ok(_) => {
                // Committed, so the state it was decided on was the stored one.
                let (added, spent) = events
                    .iter()
                    .fold((0u64, 0u64), |(a, s), e| match &e.event {
                        ResourceEvent::ResourceAdded { amount, .. } => {
                            (a.saturating_add(*amount), s)
                        }
                        ResourceEvent::ResourceAllocated { amount, .. } => {
                            (a, s.saturating_add(*amount))
                        }
                        _ => (a, s),
                    });
                self.env.metrics.amounts(&next.resource_type, added, spent);
                self.state = Some(next.clone());
                if self.env.hub.has_listeners(&self.id, &next.owner) {
                    self.env
                        .hub
                        .publish(Arc::new(Change::new(events.clone(), next.clone())));
                }
                Some(Ok(CommandReply {
                    existing: false,
                    resource_id: self.id,
                    version: next.version,
                    events,
                    resource: next,
                    duplicate: false,
                }))
            }
            Err(AppendError::Conflict { .. }) => {
                // Only the first refusal says something about the store; the ones after it are
                // the broken chain's.
                if round.intact {
                    round.stale = true;
                    self.env.metrics.conflict();
                }
                round.intact = false;
                None
            }
            Err(AppendError::Duplicate(record)) => {
                // Nothing was written: `self.state` is still the stored state, but the commands
                // after this one were decided on top of it.
                if round.intact {
                    round.broke_on_duplicate = true;
                }
                round.intact = false;
                Some(self.original_outcome(&mail.request, record).await)
            }
            Err(AppendError::Store(e)) => {
                // The outcome is unknown to us: reload before the next command.
                round.intact = false;
                round.stale = true;
                Some(Err(e.into()))
            }
        }
    }
}

/// How one round of a batch is settling.
#[derive(Default)]
struct Round {
    /// Everything before the current command committed as decided.
    intact: bool,
    /// The store may hold more than the actor's state: reload and back off before the next round.
    stale: bool,
    /// The run first broke on a duplicate (a resend of a committed command).
    broke_on_duplicate: bool,
    /// The commands to decide again, in order.
    again: Vec<Mail>,
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
