//! Why a command was refused: the client's fault, told in a stable code and a readable message.

use crate::domain::{ResourceId, Timestamp};
use thiserror::Error;

/// A rule said no. Nothing was written.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum Rejection {
    #[error("amount must be a positive integer")]
    InvalidAmount,
    #[error("the result would overflow a 64-bit amount")]
    Overflow,
    #[error("resource is locked: {reason}")]
    Locked {
        reason: String,
        expires_at: Timestamp,
    },
    #[error("insufficient amount: {available} available, {requested} requested")]
    Insufficient { available: u64, requested: u64 },
    #[error("adding {requested} would exceed the maximum; room for {room}")]
    WouldExceedMax { requested: u64, room: u64 },
    #[error("resource is already locked")]
    AlreadyLocked,
    #[error("resource is not locked")]
    NotLocked,
    #[error("only the lock holder or a service may unlock before expiry")]
    NotLockHolder,
    #[error("resource {0} not found")]
    NotFound(ResourceId),
    #[error("resource belongs to another player")]
    NotOwner,
    #[error("{0}")]
    Forbidden(&'static str),
    #[error("unknown resource type {0:?}")]
    UnknownResourceType(String),
    #[error("invalid parameters: {0}")]
    InvalidParams(String),
    #[error("lock duration must be between 1 ms and {max_ms} ms")]
    InvalidDuration { max_ms: u64 },
    #[error("reason is longer than {max} bytes")]
    ReasonTooLong { max: usize },
    #[error("resource already exists")]
    AlreadyExists,
}
