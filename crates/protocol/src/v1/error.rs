//! Every error code of protocol version 1: the one list of them. A code's wire spelling is its
//! variant's name in snake case (`NotLockHolder` is `not_lock_holder`), derived, never typed; a
//! client matches on it, the message beside it is for people (docs/protocol.md §5).
//!
//! The server turns every error into a reply in one place (`net::reply`), where its errors map to
//! these codes; this crate knows nothing of the server.

use serde::{Deserialize, Serialize};

/// A stable, machine-readable error code, as sent in `error.code` (and, for the upgrade's
/// refusals, in the JSON body of the HTTP answer).
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    Serialize,
    Deserialize,
    strum::IntoStaticStr,
    strum::VariantArray,
)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum ErrorCode {
    // The frame or the session.
    /// The message is not well formed (shape, fields, a combination the request forbids).
    BadMessage,
    /// `type` names no message of this version.
    UnknownType,
    /// A command over the session's command rate; retry later with the same `command_id`.
    RateLimited,
    /// One subscription more than `limits.max_subscriptions`.
    TooManySubscriptions,
    /// `unsubscribe` of a `sub` that is not live in this session.
    UnknownSubscription,
    /// `from_version` ahead of the resource's current version.
    InvalidFromVersion,
    /// (No `req`.) A subscription stopped because the log could not be read.
    SubscriptionFailed,
    // The rules.
    NotFound,
    Forbidden,
    InvalidAmount,
    Overflow,
    Insufficient,
    ExceedsMax,
    Locked,
    AlreadyLocked,
    NotLocked,
    NotLockHolder,
    InvalidDuration,
    ReasonTooLong,
    UnknownResourceType,
    InvalidParams,
    AlreadyExists,
    // Reads of the past.
    /// `state_at` with `version` 0 or above the current version.
    InvalidVersion,
    /// `state_at` with `at` before the resource's creation.
    BeforeCreation,
    // Exactly-once and the infrastructure.
    /// A `command_id` already used for another resource or another command.
    CommandIdReused,
    /// Too contended to commit after several attempts; retry with the same `command_id`.
    Conflict,
    /// Storage failed; retry with the same `command_id`.
    Unavailable,
    /// The server's disk is below its free-space floor: nothing was written; retry later (with the
    /// same `command_id` or a new one: the command left no trace). Reads go on.
    StorageFull,
    /// The server is stopping and did not take the command.
    ShuttingDown,
    // The upgrade (HTTP refusals before the WebSocket opens).
    /// No token, or one this server did not sign.
    Unauthorized,
    /// The token's `exp` has passed.
    TokenExpired,
    /// Subprotocols offered, none of them this server's.
    UnsupportedProtocol,
    /// A fault of the server itself.
    Internal,
}

impl ErrorCode {
    /// The code as the wire spells it.
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use strum::VariantArray;

    #[test]
    fn every_code_travels_as_its_snake_case_name_and_comes_back() {
        for &code in ErrorCode::VARIANTS {
            let json = serde_json::to_value(code).unwrap();
            assert_eq!(json, code.as_str(), "serde and the name agree");
            assert_eq!(serde_json::from_value::<ErrorCode>(json).unwrap(), code);
            let bytes = crate::encode(&code);
            assert_eq!(crate::decode::<ErrorCode>(&bytes).unwrap(), code);
        }
        assert_eq!(ErrorCode::NotLockHolder.as_str(), "not_lock_holder");
        assert_eq!(ErrorCode::ExceedsMax.as_str(), "exceeds_max");
    }
}
