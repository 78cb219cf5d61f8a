//! What a bot does with what comes back: replies matched to its pending requests (checked and
//! recorded in its ledger), updates of what it owns, timeouts and the requests it gives up on.

use super::*;

impl Bot {
    /// Resends what timed out; gives up on what was sent too often.
    pub(super) async fn on_timeouts(&mut self) -> Result<(), ()> {
        let now = Instant::now();
        let expired: Vec<RequestId> = self
            .pending
            .iter()
            .filter(|(_, p)| p.deadline <= now)
            .map(|(r, _)| *r)
            .collect();
        for req in expired {
            let Some(p) = self.pending.get_mut(&req) else {
                continue;
            };
            self.shared.rec.error("timeout");
            if p.attempts >= MAX_ATTEMPTS {
                let p = self.pending.remove(&req).expect("present");
                self.give_up(p);
                continue;
            }
            p.attempts += 1;
            p.deadline = now + self.shared.config.request_timeout;
            let frame = p.frame.clone();
            let sent = match self.conn.as_mut() {
                Some(conn) => conn.send_frame(frame).await.is_ok(),
                None => false,
            };
            if !sent && !self.reconnect().await {
                return Err(());
            }
        }
        Ok(())
    }

    /// A request that will never be answered: a command's outcome is unknown (the final check
    /// reads the history to see whether it applied).
    pub(super) fn give_up(&mut self, p: Pending) {
        if let Kind::Command {
            resource: Some(resource_id),
            command_id,
            op,
        } = p.kind
        {
            if op == Op::Lock
                && let Some(own) = self.own.as_mut()
            {
                own.locked = true;
            }
            self.entries.push(Entry {
                resource_id,
                command_id,
                op,
                outcome: Outcome::Unknown,
            });
        }
    }

    pub(super) fn on_message(&mut self, msg: ServerMessage) {
        let now = Instant::now();
        let Some(req) = msg.req() else {
            if let ServerMessage::Error { code, .. } = &msg {
                // The server is about to close this session; the read error that follows
                // triggers the reconnect.
                self.shared.rec.error(code.as_str());
            }
            return;
        };
        let Some(p) = self.pending.remove(&req) else {
            return;
        };
        let latency = now.saturating_duration_since(p.origin);
        match p.kind {
            Kind::Query => {
                self.shared.rec.query(latency);
                if let ServerMessage::Error { code, .. } = &msg {
                    self.shared.rec.error(code.as_str());
                }
            }
            Kind::Command {
                resource,
                command_id,
                op,
            } => {
                let guild = resource.is_some_and(|id| self.shared.guild.contains(&id));
                self.shared.rec.command(now.into_std(), latency, guild);
                self.on_command_reply(msg, resource, command_id, op);
            }
        }
    }

    pub(super) fn on_command_reply(
        &mut self,
        msg: ServerMessage,
        resource: Option<ResourceId>,
        command_id: CommandId,
        op: Op,
    ) {
        match msg {
            ServerMessage::Applied {
                resource_id,
                version,
                resource: view,
                ..
            } => {
                let op = match op {
                    Op::Create { .. } => {
                        self.own = Some(Own {
                            id: resource_id,
                            amount: view.amount,
                            max: view.max_amount,
                            locked: view.locked,
                        });
                        Op::Create {
                            initial: view.amount,
                            regen_milli: view.regen_milli.unwrap_or(0),
                        }
                    }
                    other => other,
                };
                self.observe(&view);
                self.entries.push(Entry {
                    resource_id,
                    command_id,
                    op,
                    outcome: Outcome::Applied { version },
                });
            }
            ServerMessage::Error { code, .. } => {
                if !(self.cleaning_up && code == ErrorCode::NotLocked) {
                    self.shared.rec.error(code.as_str());
                }
                if code == ErrorCode::NotLocked
                    && let Some(own) = self.own.as_mut()
                {
                    own.locked = false;
                }
                if let Some(resource_id) = resource {
                    let outcome = if ambiguous(code) {
                        Outcome::Unknown
                    } else {
                        Outcome::Rejected { code }
                    };
                    self.entries.push(Entry {
                        resource_id,
                        command_id,
                        op,
                        outcome,
                    });
                }
            }
            other => {
                self.shared.rec.error("unexpected_reply");
                tracing_unexpected(self.index, &other);
            }
        }
    }

    /// Keeps what the bot knows of its own resource current.
    pub(super) fn observe(&mut self, view: &ClientResource) {
        if let Some(own) = self.own.as_mut()
            && own.id == view.id
        {
            own.amount = view.amount;
            own.locked = view.locked;
        }
    }
}
