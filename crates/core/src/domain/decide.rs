//! `decide` (all the rules: may refuse, never mutates) and `apply` (only changes state, never fails).

use crate::domain::{
    AddResource, AllocateResource, Balance, Catalogue, Command, CreateResource, EventEnvelope,
    Lock, LockResource, MAX_LOCK_MS, MAX_NAME_BYTES, MAX_REASON_BYTES, PerOwner, PlayerId,
    Principal, Rejection, ResourceEvent, ResourceId, Role, ServerResource, Timestamp, accrue,
    validate_params,
};

/// Longest resource type name accepted from a service creating a custom type.
const MAX_TYPE_BYTES: usize = 64;

/// Decides a `CreateResource` for the new resource `id`.
pub fn decide_create(
    catalogue: &Catalogue,
    principal: &Principal,
    cmd: &CreateResource,
    now: Timestamp,
) -> Result<ResourceEvent, Rejection> {
    let owner = may_create(principal, cmd)?;
    if owner.as_str().is_empty() {
        return Err(Rejection::InvalidParams("owner must not be empty".into()));
    }
    if cmd.resource_type.is_empty() || cmd.resource_type.len() > MAX_TYPE_BYTES {
        return Err(Rejection::InvalidParams(format!(
            "resource_type must be 1 to {MAX_TYPE_BYTES} bytes"
        )));
    }
    let name = wallet_name(catalogue, cmd)?;
    let params = match &cmd.params {
        Some(custom) => {
            validate_params(custom).map_err(Rejection::InvalidParams)?;
            custom.clone()
        }
        None => catalogue
            .get(&cmd.resource_type)
            .cloned()
            .ok_or_else(|| Rejection::UnknownResourceType(cmd.resource_type.clone()))?,
    };
    Ok(ResourceEvent::ResourceCreated {
        owner,
        resource_type: cmd.resource_type.clone(),
        max_amount: params.max_amount,
        regen_milli: params.regen_milli,
        balance: Balance {
            amount: params.initial_amount,
            regen_carry: 0,
            regen_at: now,
        },
        by: principal.player.clone(),
        name: Some(name),
    })
}

/// Whether `principal` may send this create at all (whether or not the wallet exists); the
/// owner it creates for.
fn may_create(principal: &Principal, cmd: &CreateResource) -> Result<PlayerId, Rejection> {
    if principal.role == Role::Spectator {
        return Err(Rejection::Forbidden("spectators cannot send commands"));
    }
    let owner = cmd
        .owner
        .clone()
        .unwrap_or_else(|| principal.player.clone());
    if owner != principal.player && !principal.is_trusted() {
        return Err(Rejection::Forbidden(
            "only a service may create a resource for another owner",
        ));
    }
    if cmd.params.is_some() && !principal.is_trusted() {
        return Err(Rejection::Forbidden(
            "only a service may set custom resource parameters",
        ));
    }
    Ok(owner)
}

/// The name of the wallet a create makes: the type's own for a type held once per owner (a
/// custom type too, unless its name says otherwise), `<type>:<label>` for one held many times.
fn wallet_name(catalogue: &Catalogue, cmd: &CreateResource) -> Result<String, Rejection> {
    let ty = &cmd.resource_type;
    if ty.contains(':') {
        return Err(Rejection::InvalidParams(
            "resource_type must not contain `:`".into(),
        ));
    }
    let per_owner = catalogue.per_owner(ty);
    match (per_owner, cmd.name.as_deref()) {
        (Some(PerOwner::One) | None, None) => Ok(ty.clone()),
        (Some(PerOwner::One), Some(name)) if name == ty => Ok(ty.clone()),
        (Some(PerOwner::One), Some(_)) => Err(Rejection::InvalidParams(format!(
            "an owner holds one {ty}, named {ty:?}: leave `name` out"
        ))),
        (Some(PerOwner::Many), None) => Err(Rejection::InvalidParams(format!(
            "an owner holds many {ty}: name this one `{ty}:<label>`"
        ))),
        // A custom type is held once unless the name makes it one of many.
        (Some(PerOwner::Many) | None, Some(name)) => {
            let label = name
                .strip_prefix(ty.as_str())
                .and_then(|rest| rest.strip_prefix(':'));
            match label {
                Some(label)
                    if !label.is_empty()
                        && name.len() <= MAX_NAME_BYTES
                        && !label.chars().any(char::is_control) =>
                {
                    Ok(name.to_owned())
                }
                _ if per_owner.is_none() && name == ty => Ok(ty.clone()),
                _ => Err(Rejection::InvalidParams(format!(
                    "a {ty} wallet's name is `{ty}:<label>`, at most {MAX_NAME_BYTES} bytes, \
                     without control characters"
                ))),
            }
        }
    }
}

/// Decides a command on an existing resource: the events it causes, or why it is refused.
///
/// A lock whose expiry has passed is recorded first (`ResourceLockExpired`), so the log shows when
/// the lock ended before anything that relied on it having ended. An empty list means there is
/// nothing to record (an `ExpireLock` for a lock that is gone).
pub fn decide(
    state: &ServerResource,
    principal: &Principal,
    command: &Command,
    now: Timestamp,
) -> Result<Vec<ResourceEvent>, Rejection> {
    if principal.role == Role::Spectator {
        return Err(Rejection::Forbidden("spectators cannot send commands"));
    }
    if let Command::Create(create) = command {
        // The wallet exists (its id is its owner's and name's): the actor answers with it, to
        // whoever may create it.
        may_create(principal, create)?;
        if create.resource_type != state.resource_type {
            // A name of another type's wallet (`gold` named `wood:camp-3`): not this wallet.
            return Err(Rejection::InvalidParams(format!(
                "{:?} names a {} wallet, not a {}",
                state.name.as_deref().unwrap_or_default(),
                state.resource_type,
                create.resource_type
            )));
        }
        return Err(Rejection::AlreadyExists);
    }
    if !principal.is_trusted() && state.owner != principal.player {
        return Err(Rejection::NotOwner);
    }

    let mut events = Vec::with_capacity(2);
    let expired = state.lock.as_ref().filter(|l| l.expires_at <= now);
    if let Some(lock) = expired {
        events.push(ResourceEvent::ResourceLockExpired {
            expired_at: lock.expires_at,
        });
    }
    let lock = state.active_lock(now);
    let event = match command {
        Command::Create(_) => return Err(Rejection::AlreadyExists),
        Command::Allocate(c) => allocate(state, principal, c, lock, now)?,
        Command::Add(c) => add(state, principal, c, now)?,
        Command::Lock(c) => lock_for(principal, c, lock, now)?,
        Command::Unlock(_) => unlock(principal, lock)?,
        Command::ExpireLock(_) if principal.is_trusted() => return Ok(events),
        Command::ExpireLock(_) => {
            return Err(Rejection::Forbidden("only the server expires locks"));
        }
    };
    events.push(event);
    Ok(events)
}

/// Spends `c.amount` of what is there now (regeneration included), unless a lock holds.
fn allocate(
    state: &ServerResource,
    principal: &Principal,
    c: &AllocateResource,
    lock: Option<&Lock>,
    now: Timestamp,
) -> Result<ResourceEvent, Rejection> {
    check_amount(c.amount)?;
    check_reason(&c.reason)?;
    if let Some(lock) = lock {
        return Err(Rejection::Locked {
            reason: lock.reason.clone(),
            expires_at: lock.expires_at,
        });
    }
    let now_balance = accrue(state.balance, state.max_amount, state.regen_milli, now);
    let left = now_balance
        .amount
        .checked_sub(c.amount)
        .ok_or(Rejection::Insufficient {
            available: now_balance.amount,
            requested: c.amount,
        })?;
    Ok(ResourceEvent::ResourceAllocated {
        amount: c.amount,
        reason: c.reason.clone(),
        balance: Balance {
            amount: left,
            ..now_balance
        },
        by: principal.player.clone(),
    })
}

/// Adds `c.amount` up to the maximum; reaching the maximum drops the regeneration carry.
fn add(
    state: &ServerResource,
    principal: &Principal,
    c: &AddResource,
    now: Timestamp,
) -> Result<ResourceEvent, Rejection> {
    check_amount(c.amount)?;
    check_reason(&c.reason)?;
    let now_balance = accrue(state.balance, state.max_amount, state.regen_milli, now);
    let total = now_balance
        .amount
        .checked_add(c.amount)
        .ok_or(Rejection::Overflow)?;
    if total > state.max_amount {
        return Err(Rejection::WouldExceedMax {
            requested: c.amount,
            room: state.max_amount - now_balance.amount,
        });
    }
    let carry = if total == state.max_amount {
        0
    } else {
        now_balance.regen_carry
    };
    Ok(ResourceEvent::ResourceAdded {
        amount: c.amount,
        reason: c.reason.clone(),
        balance: Balance {
            amount: total,
            regen_carry: carry,
            regen_at: now_balance.regen_at,
        },
        by: principal.player.clone(),
    })
}

/// Locks for `c.duration_ms`, unless a lock already holds.
fn lock_for(
    principal: &Principal,
    c: &LockResource,
    lock: Option<&Lock>,
    now: Timestamp,
) -> Result<ResourceEvent, Rejection> {
    check_reason(&c.reason)?;
    if c.duration_ms == 0 || c.duration_ms > MAX_LOCK_MS {
        return Err(Rejection::InvalidDuration {
            max_ms: MAX_LOCK_MS,
        });
    }
    if lock.is_some() {
        return Err(Rejection::AlreadyLocked);
    }
    let expires_at = now
        .checked_add_ms(c.duration_ms)
        .ok_or(Rejection::Overflow)?;
    Ok(ResourceEvent::ResourceLocked {
        holder: principal.player.clone(),
        reason: c.reason.clone(),
        expires_at,
    })
}

/// Ends the lock that holds now: its holder or a service may.
fn unlock(principal: &Principal, lock: Option<&Lock>) -> Result<ResourceEvent, Rejection> {
    let lock = lock.ok_or(Rejection::NotLocked)?;
    if lock.holder != principal.player && !principal.is_trusted() {
        return Err(Rejection::NotLockHolder);
    }
    Ok(ResourceEvent::ResourceUnlocked {
        by: principal.player.clone(),
    })
}

fn check_amount(amount: u64) -> Result<(), Rejection> {
    if amount == 0 {
        Err(Rejection::InvalidAmount)
    } else {
        Ok(())
    }
}

fn check_reason(reason: &str) -> Result<(), Rejection> {
    if reason.len() > MAX_REASON_BYTES {
        Err(Rejection::ReasonTooLong {
            max: MAX_REASON_BYTES,
        })
    } else {
        Ok(())
    }
}

/// Folds one stored event into the state. Holds no rules and never fails: an event is a fact.
pub fn apply(state: Option<ServerResource>, e: &EventEnvelope) -> Option<ServerResource> {
    let system = || PlayerId::new("system");
    if let ResourceEvent::ResourceCreated {
        owner,
        resource_type,
        max_amount,
        regen_milli,
        balance,
        by,
        name,
    } = &e.event
    {
        return Some(ServerResource {
            name: name.as_deref().map(Into::into),
            id: e.resource_id,
            owner: owner.clone(),
            resource_type: resource_type.clone(),
            balance: *balance,
            max_amount: *max_amount,
            regen_milli: *regen_milli,
            lock: None,
            version: e.version,
            created_at: e.at,
            created_by: by.clone(),
            updated_at: e.at,
            updated_by: by.clone(),
            last_command: e.command_id,
        });
    }
    // Any other event before creation cannot come from a valid log; keep what there is.
    let mut s = state?;
    s.updated_by = match &e.event {
        ResourceEvent::ResourceCreated { .. } => unreachable!("handled above"),
        ResourceEvent::ResourceAllocated { balance, by, .. }
        | ResourceEvent::ResourceAdded { balance, by, .. } => {
            s.balance = *balance;
            by.clone()
        }
        ResourceEvent::ResourceLocked {
            holder,
            reason,
            expires_at,
        } => {
            s.lock = Some(Lock {
                holder: holder.clone(),
                reason: reason.clone(),
                expires_at: *expires_at,
            });
            holder.clone()
        }
        ResourceEvent::ResourceUnlocked { by } => {
            s.lock = None;
            by.clone()
        }
        ResourceEvent::ResourceLockExpired { .. } => {
            s.lock = None;
            system()
        }
    };
    s.version = e.version;
    s.updated_at = e.at;
    s.last_command = e.command_id;
    Some(s)
}

/// The state after folding a whole log (or a snapshot and the events after it).
pub fn replay<'a>(
    start: Option<ServerResource>,
    events: impl IntoIterator<Item = &'a EventEnvelope>,
) -> Option<ServerResource> {
    events.into_iter().fold(start, apply)
}

/// Stamps decided events with their versions, the command, its issuer's role and the time,
/// ready to append.
pub fn stamp(
    resource_id: ResourceId,
    after_version: u64,
    command_id: crate::domain::CommandId,
    by_role: Role,
    now: Timestamp,
    events: Vec<ResourceEvent>,
) -> Vec<EventEnvelope> {
    events
        .into_iter()
        .zip(after_version + 1..)
        .map(|(event, version)| EventEnvelope {
            resource_id,
            version,
            command_id,
            at: now,
            schema: crate::domain::EVENT_SCHEMA_VERSION,
            event,
            by_role: Some(by_role),
        })
        .collect()
}
