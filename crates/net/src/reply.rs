//! The one place where errors become `error` replies: every failure a request can meet has a
//! code here ([`Coded`]) and turns into a [`RequestError`], which becomes the wire reply. Storage
//! faults are logged in full and told to the client only as `unavailable`.

use crate::auth::AuthError;
use warden_core::actor::CommandError;
use warden_core::domain::Rejection;
use warden_core::projection::ReadError;
use warden_core::projection::time_travel::StateAtError;
use warden_core::store::StoreError;
use warden_protocol::{ErrorCode, RequestId, ServerMessage};

/// An error that a client is told about by a code.
pub trait Coded {
    fn code(&self) -> ErrorCode;
}

/// Why a request failed, as the client will be told: a code and a readable message.
#[derive(Debug)]
pub(crate) struct RequestError {
    pub code: ErrorCode,
    pub message: String,
}

impl RequestError {
    pub(super) fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    /// The `error` reply; `req` is `None` for an error about the session or a message whose
    /// `req` could not be read.
    pub(super) fn into_reply(self, req: Option<RequestId>) -> ServerMessage {
        ServerMessage::Error {
            req,
            code: self.code,
            message: self.message,
        }
    }
}

/// What answering a request gives: its reply, or why it failed.
pub(crate) type Answer = Result<ServerMessage, RequestError>;

/// The reply to request `req`, whichever way it went.
pub(crate) fn reply(req: RequestId, answer: Answer) -> ServerMessage {
    answer.unwrap_or_else(|e| e.into_reply(Some(req)))
}

/// An infrastructure fault: the detail goes to the log, the client gets a code. A store that is
/// recovering has said so once in the log; its refusals are not logged again one by one.
pub(crate) fn unavailable(e: &StoreError) -> RequestError {
    if let StoreError::Recovering(_) = e {
        return RequestError::new(
            ErrorCode::Unavailable,
            "storage is recovering from a failure; retry with the same command_id",
        );
    }
    tracing::warn!(error = %e, "request failed on the store");
    RequestError::new(ErrorCode::Unavailable, "storage unavailable; retry")
}

impl From<CommandError> for RequestError {
    fn from(e: CommandError) -> Self {
        match e {
            // Logged once per incident by the store, not per command.
            CommandError::Store(StoreError::NoSpace { .. }) => RequestError::new(
                ErrorCode::StorageFull,
                "the server's storage is full: nothing was written; retry later",
            ),
            CommandError::Store(e) => unavailable(&e),
            e => RequestError::new(e.code(), e.to_string()),
        }
    }
}

impl From<ReadError> for RequestError {
    fn from(e: ReadError) -> Self {
        match e {
            ReadError::Store(e) => unavailable(&e),
            e => RequestError::new(e.code(), e.to_string()),
        }
    }
}

impl From<StateAtError> for RequestError {
    fn from(e: StateAtError) -> Self {
        match e {
            StateAtError::Store(e) => unavailable(&e),
            e => RequestError::new(e.code(), e.to_string()),
        }
    }
}

impl Coded for Rejection {
    fn code(&self) -> ErrorCode {
        match self {
            Rejection::InvalidAmount => ErrorCode::InvalidAmount,
            Rejection::Overflow => ErrorCode::Overflow,
            Rejection::Locked { .. } => ErrorCode::Locked,
            Rejection::Insufficient { .. } => ErrorCode::Insufficient,
            Rejection::WouldExceedMax { .. } => ErrorCode::ExceedsMax,
            Rejection::AlreadyLocked => ErrorCode::AlreadyLocked,
            Rejection::NotLocked => ErrorCode::NotLocked,
            Rejection::NotLockHolder => ErrorCode::NotLockHolder,
            Rejection::NotFound(_) => ErrorCode::NotFound,
            Rejection::NotOwner | Rejection::Forbidden(_) => ErrorCode::Forbidden,
            Rejection::UnknownResourceType(_) => ErrorCode::UnknownResourceType,
            Rejection::InvalidParams(_) => ErrorCode::InvalidParams,
            Rejection::InvalidDuration { .. } => ErrorCode::InvalidDuration,
            Rejection::ReasonTooLong { .. } => ErrorCode::ReasonTooLong,
            Rejection::AlreadyExists => ErrorCode::AlreadyExists,
        }
    }
}

impl Coded for CommandError {
    fn code(&self) -> ErrorCode {
        match self {
            CommandError::Rejected(r) => r.code(),
            CommandError::CommandIdReused => ErrorCode::CommandIdReused,
            CommandError::Contention => ErrorCode::Conflict,
            CommandError::Store(StoreError::NoSpace { .. }) => ErrorCode::StorageFull,
            CommandError::Store(_) => ErrorCode::Unavailable,
            CommandError::ShuttingDown => ErrorCode::ShuttingDown,
        }
    }
}

impl Coded for ReadError {
    fn code(&self) -> ErrorCode {
        match self {
            ReadError::NotFound(_) => ErrorCode::NotFound,
            ReadError::Forbidden => ErrorCode::Forbidden,
            ReadError::Store(_) => ErrorCode::Unavailable,
        }
    }
}

impl Coded for StateAtError {
    fn code(&self) -> ErrorCode {
        match self {
            StateAtError::NotFound => ErrorCode::NotFound,
            StateAtError::InvalidVersion { .. } => ErrorCode::InvalidVersion,
            StateAtError::BeforeCreation { .. } => ErrorCode::BeforeCreation,
            StateAtError::Store(_) => ErrorCode::Unavailable,
        }
    }
}

impl Coded for AuthError {
    fn code(&self) -> ErrorCode {
        match self {
            AuthError::Missing | AuthError::Invalid(_) => ErrorCode::Unauthorized,
            AuthError::Expired => ErrorCode::TokenExpired,
            AuthError::Secret { .. } | AuthError::IssuerKey { .. } => ErrorCode::Internal,
        }
    }
}
