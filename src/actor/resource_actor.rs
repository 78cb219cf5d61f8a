//! The actor of one resource: decides its commands one at a time and commits them with a version
//! check.

use crate::actor::registry::Shared;
use crate::actor::{CommandError, CommandReply, CommandRequest};
use crate::bus::Change;
use crate::domain::{self, Command, CommandId, Principal, Rejection, ResourceId, ServerResource};
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
                _ = tokio::time::sleep(idle_after), if lock_timer.is_none() => break,
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
        if let Err(e) = self.execute(request).await {
            tracing::warn!(resource = %self.id, error = %e, "could not record a lock expiry");
            // Try again later rather than spinning.
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    async fn handle(&mut self, mail: Mail) {
        let outcome = self.execute(mail.request).await;
        let _ = mail.reply.send(outcome);
    }

    async fn reload(&mut self) -> Result<(), StoreError> {
        self.state = self.shared.store.load(self.id).await?.state();
        self.fresh = true;
        Ok(())
    }

    async fn execute(&mut self, request: CommandRequest) -> Result<CommandReply, CommandError> {
        let max_attempts = self.shared.config.max_attempts.max(1);
        for attempt in 0..max_attempts {
            if attempt > 0 {
                let cap = self.shared.config.backoff.as_micros() as u64 * (1 << attempt.min(10));
                let jitter = rand::rng().random_range(0..=cap.max(1));
                tokio::time::sleep(Duration::from_micros(jitter)).await;
            }
            if !self.fresh {
                self.reload().await?;
            }
            let now = self.shared.clock.now();
            let decided = match (&self.state, &request.command) {
                (None, Command::Create(create)) => {
                    domain::decide_create(&self.shared.catalogue, &request.principal, create, now)
                        .map(|e| vec![e])
                }
                (None, _) => Err(Rejection::NotFound(self.id)),
                (Some(state), command) => domain::decide(state, &request.principal, command, now),
            };
            let events = match decided {
                Ok(events) => events,
                Err(rejection) => {
                    // A retry of a command that already succeeded must get its first outcome, not
                    // a rejection from the state it led to.
                    if let Some(record) = self.shared.store.find_command(request.command_id).await?
                    {
                        return self.original_outcome(&request, record).await;
                    }
                    return Err(CommandError::Rejected(rejection));
                }
            };
            let base = self.state.as_ref().map_or(0, |s| s.version);
            if events.is_empty() {
                let state = self
                    .state
                    .clone()
                    .expect("only existing resources decide no-ops");
                return Ok(CommandReply {
                    resource_id: self.id,
                    version: base,
                    events: Vec::new(),
                    resource: state,
                    duplicate: false,
                });
            }
            let events = domain::stamp(self.id, base, request.command_id, now, events);
            let next = domain::replay(self.state.clone(), &events)
                .expect("decided events always lead to a state");
            let every = self.shared.config.snapshot_every.max(1);
            let snapshot = (next.version / every > base / every).then(|| next.clone());
            let append = AppendRequest {
                resource_id: self.id,
                expected_version: base,
                command_id: request.command_id,
                events: events.clone(),
                snapshot,
            };
            match self.shared.store.append(append).await {
                Ok(_) => {
                    self.state = Some(next.clone());
                    self.shared
                        .hub
                        .publish(Arc::new(Change::new(events.clone(), next.clone())));
                    return Ok(CommandReply {
                        resource_id: self.id,
                        version: next.version,
                        events,
                        resource: next,
                        duplicate: false,
                    });
                }
                Err(AppendError::Conflict { .. }) => {
                    self.fresh = false;
                    continue;
                }
                Err(AppendError::Duplicate(record)) => {
                    return self.original_outcome(&request, record).await;
                }
                Err(AppendError::Store(e)) => {
                    // The outcome is unknown to us: reload before the next command.
                    self.fresh = false;
                    return Err(e.into());
                }
            }
        }
        Err(CommandError::Contention)
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

async fn sleep_or_forever(d: Option<Duration>) {
    match d {
        Some(d) => tokio::time::sleep(d).await,
        None => std::future::pending().await,
    }
}
