//! Telling a resend from a reused command id: whether a command is the one whose events the log
//! recorded under its id.
//!
//! The events record what the command asked for (amounts, reasons, the lock's duration as its
//! expiry), so no digest needs storing beside the id: the log itself is compared.

use crate::domain::{Command, EventEnvelope, Principal, ResourceEvent};

/// True if `command`, sent by `principal`, is the command that produced `events` (one command's
/// events, in order): a resend. False means the id was reused for something else.
pub fn is_recorded_as(command: &Command, principal: &Principal, events: &[EventEnvelope]) -> bool {
    // A command's own event comes last (an allocate may be preceded by a lock's expiry).
    let Some(last) = events.last() else {
        return false;
    };
    match (command, &last.event) {
        (
            Command::Create(c),
            ResourceEvent::ResourceCreated {
                owner,
                resource_type,
                max_amount,
                regen_milli,
                balance,
                ..
            },
        ) => {
            let same_owner = c.owner.as_ref().unwrap_or(&principal.player) == owner;
            // Without parameters the catalogue's applied, which may have changed since.
            let same_params = c.params.as_ref().is_none_or(|p| {
                (p.initial_amount, p.max_amount, p.regen_milli)
                    == (balance.amount, *max_amount, *regen_milli)
            });
            same_owner && same_params && c.resource_type == *resource_type
        }
        (Command::Allocate(c), ResourceEvent::ResourceAllocated { amount, reason, .. }) => {
            c.amount == *amount && c.reason == *reason
        }
        (Command::Add(c), ResourceEvent::ResourceAdded { amount, reason, .. }) => {
            c.amount == *amount && c.reason == *reason
        }
        (
            Command::Lock(c),
            ResourceEvent::ResourceLocked {
                reason, expires_at, ..
            },
        ) => c.reason == *reason && last.at.checked_add_ms(c.duration_ms) == Some(*expires_at),
        (Command::Unlock(_), ResourceEvent::ResourceUnlocked { .. }) => true,
        (Command::ExpireLock(_), ResourceEvent::ResourceLockExpired { .. }) => true,
        _ => false,
    }
}
