//! What a resent command gets. Copies of one command waiting in the same batch are decided once
//! and all get its outcome ([`InFlight`]); a command whose id is already committed gets its first
//! outcome from the log, never a second application ([`ResourceActor::answer_resends`]).

use super::*;

impl ResourceActor {
    /// Answers the commands of `mails` whose id is already committed with their first outcome;
    /// returns the others, in order.
    pub(super) async fn answer_resends(&self, mails: Vec<Mail>) -> Vec<Mail> {
        let ids: Vec<CommandId> = mails.iter().map(|m| m.request.command_id).collect();
        let records = match self.env.store.find_commands(&ids).await {
            Ok(records) => records,
            // Decided again, they meet their duplicates in the store one by one.
            Err(_) => return mails,
        };
        let mut rest = Vec::with_capacity(mails.len());
        let mut here = Vec::new();
        for (mail, record) in mails.into_iter().zip(records) {
            match record {
                Some(record)
                    if record.resource_id == self.id
                        && mail.request.command.resource_id() == Some(self.id) =>
                {
                    here.push((mail, record));
                }
                Some(record) => {
                    let outcome = self.original_outcome(&mail.request, record).await;
                    let _ = mail.reply.send(outcome);
                }
                None => rest.push(mail),
            }
        }
        self.original_outcomes(here).await;
        rest
    }

    /// Answers resends of this resource's committed commands with their first outcomes, from one
    /// pass over the log (a page at a time) instead of one read of the log per resend.
    pub(super) async fn original_outcomes(&self, mut found: Vec<(Mail, CommitRecord)>) {
        /// Events kept behind the replay: more than any one command produces.
        const WINDOW: usize = 8;
        const PAGE: u64 = 1_000;
        found.sort_by_key(|(_, r)| r.last_version);
        let upto = found.last().map_or(0, |(_, r)| r.last_version);
        let mut found = found.into_iter().peekable();
        let mut state: Option<ServerResource> = None;
        let mut recent: VecDeque<EventEnvelope> = VecDeque::with_capacity(WINDOW + 1);
        let mut after = 0;
        while after < upto {
            let page = match self
                .env
                .store
                .events(self.id, after, (upto - after).min(PAGE) as usize)
                .await
            {
                Ok(page) if !page.is_empty() => page,
                _ => break, // answered one by one below
            };
            for event in page {
                after = event.version;
                state = domain::apply(state, &event);
                recent.push_back(event);
                if recent.len() > WINDOW {
                    recent.pop_front();
                }
                while let Some((_, record)) = found.peek()
                    && record.last_version == after
                {
                    let (mail, record) = found.next().expect("peeked");
                    let events: Vec<EventEnvelope> = recent
                        .iter()
                        .filter(|e| e.version >= record.first_version)
                        .cloned()
                        .collect();
                    let complete = events.first().map(|e| e.version) == Some(record.first_version);
                    let outcome = match &state {
                        Some(resource) if complete => {
                            settle(&mail.request, record, resource.clone(), events)
                        }
                        _ => self.original_outcome(&mail.request, record).await,
                    };
                    let _ = mail.reply.send(outcome);
                }
            }
        }
        for (mail, record) in found {
            let outcome = self.original_outcome(&mail.request, record).await;
            let _ = mail.reply.send(outcome);
        }
    }

    /// A rejection, unless the command id already succeeded: a retry of a command that did must
    /// get its first outcome, not a rejection from the state it led to.
    pub(super) async fn rejected(
        &self,
        request: &CommandRequest,
        rejection: Rejection,
    ) -> Result<CommandReply, CommandError> {
        match self.env.store.find_command(request.command_id).await? {
            Some(record) => self.original_outcome(request, record).await,
            // Creating a wallet that exists finds it: the caller may hold it (the rules checked).
            None => match (&rejection, &self.state) {
                (Rejection::AlreadyExists, Some(state)) => Ok(CommandReply {
                    resource_id: self.id,
                    version: state.version,
                    events: Vec::new(),
                    resource: state.clone(),
                    duplicate: false,
                    existing: true,
                }),
                _ => Err(CommandError::Rejected(rejection)),
            },
        }
    }

    /// The outcome a command id produced the first time, rebuilt from the log.
    pub(super) async fn original_outcome(
        &self,
        request: &CommandRequest,
        record: CommitRecord,
    ) -> Result<CommandReply, CommandError> {
        let same_target = request.command.target(&request.principal.player) == record.resource_id
            // Only a create commits a resource's first version, so a record starting later
            // belongs to another command.
            && (record.first_version == 1 || !matches!(request.command, Command::Create(_)));
        if !same_target {
            return Err(CommandError::CommandIdReused);
        }
        let history = self
            .env
            .store
            .events(record.resource_id, 0, record.last_version as usize)
            .await?;
        let resource = domain::replay(None, &history).ok_or_else(|| {
            StoreError::Inconsistent(format!(
                "command {} is recorded at versions {}..={} of {}, whose log has no events",
                record.command_id, record.first_version, record.last_version, record.resource_id
            ))
        })?;
        let events: Vec<EventEnvelope> = history
            .into_iter()
            .filter(|e| e.version >= record.first_version)
            .collect();
        settle(request, record, resource, events)
    }
}

/// The first outcome of a committed command, from the state right after it (`resource`) and its
/// events, if `request` may have it: refused as reused when it comes from someone who may not
/// see the resource, or is another command than the one recorded.
pub(super) fn settle(
    request: &CommandRequest,
    record: CommitRecord,
    resource: ServerResource,
    events: Vec<EventEnvelope>,
) -> Result<CommandReply, CommandError> {
    if !request.principal.is_trusted() && resource.owner != request.principal.player {
        // Someone else's command id: answering would show them another player's resource.
        return Err(CommandError::CommandIdReused);
    }
    if !domain::is_recorded_as(&request.command, &request.principal, &events) {
        // The same id for a different command (another amount, reason …): a client bug
        // that must not pass as a resend.
        return Err(CommandError::CommandIdReused);
    }
    Ok(CommandReply {
        existing: false,
        resource_id: record.resource_id,
        version: record.last_version,
        events,
        resource,
        duplicate: true,
    })
}

/// Copies of one command waiting in a batch for the first one's outcome.
pub(super) struct InFlight {
    /// Per command with copies: the first's own reply channel, where its outcome is caught, and
    /// the copies' channels.
    waiting: Vec<Waiting>,
}

pub(super) struct Waiting {
    first: oneshot::Sender<Result<CommandReply, CommandError>>,
    caught: oneshot::Receiver<Result<CommandReply, CommandError>>,
    copies: Vec<oneshot::Sender<Result<CommandReply, CommandError>>>,
}

impl InFlight {
    /// Keeps the first of each command id in `mails` and takes out its exact copies (same sender,
    /// same command). A different command under the same id stays, to be refused as reused.
    pub(super) fn collapse(mails: Vec<Mail>) -> (Vec<Mail>, InFlight) {
        if mails.len() < 2 {
            // Nothing to compare (the usual case when commands are spread over resources).
            return (
                mails,
                InFlight {
                    waiting: Vec::new(),
                },
            );
        }
        let mut kept: Vec<Mail> = Vec::with_capacity(mails.len());
        let mut waiting: Vec<Waiting> = Vec::new();
        // Command id -> (position in `kept`, position in `waiting` once it has copies).
        let mut seen: HashMap<CommandId, (usize, Option<usize>)> = HashMap::new();
        for mail in mails {
            let id = mail.request.command_id;
            let Some((at, slot)) = seen.get_mut(&id) else {
                seen.insert(id, (kept.len(), None));
                kept.push(mail);
                continue;
            };
            let first = &mut kept[*at];
            if first.request.principal != mail.request.principal
                || first.request.command != mail.request.command
            {
                kept.push(mail);
                continue;
            }
            let w = *slot.get_or_insert_with(|| {
                let (catch, caught) = oneshot::channel();
                let first = std::mem::replace(&mut first.reply, catch);
                waiting.push(Waiting {
                    first,
                    caught,
                    copies: Vec::new(),
                });
                waiting.len() - 1
            });
            waiting[w].copies.push(mail.reply);
        }
        (kept, InFlight { waiting })
    }

    /// Passes each caught outcome on to the first command and its copies (once every command of
    /// the batch has been answered).
    pub(super) fn answer(self) {
        for mut w in self.waiting {
            let outcome = w.caught.try_recv().unwrap_or_else(|_| {
                Err(StoreError::NoOutcome("the command was not answered").into())
            });
            for copy in w.copies {
                let _ = copy.send(match &outcome {
                    Ok(reply) => Ok(CommandReply {
                        duplicate: true,
                        ..reply.clone()
                    }),
                    Err(e) => Err(copy_error(e)),
                });
            }
            let _ = w.first.send(outcome);
        }
    }
}

/// The same error again, for a copy of the command that got it.
pub(super) fn copy_error(e: &CommandError) -> CommandError {
    match e {
        CommandError::Rejected(r) => CommandError::Rejected(r.clone()),
        CommandError::CommandIdReused => CommandError::CommandIdReused,
        CommandError::Contention => CommandError::Contention,
        CommandError::Store(e) => CommandError::Store(e.clone()),
        CommandError::ShuttingDown => CommandError::ShuttingDown,
    }
}
