//! What can go wrong: [`ClientError`], and how a connection ended.

use std::time::Duration;
use warden_protocol::{CloseCode, ErrorCode};

/// Everything a call of this crate can fail with.
///
/// For a command, [`is_unknown_outcome`](Self::is_unknown_outcome) says what to do next: resend
/// it with the **same** command id (the server applies it at most once), or take the error as the
/// final answer (a definite refusal: nothing was written).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The server answered the request with an `error` (docs/protocol.md §5).
    #[error("refused: [{code}] {message}")]
    Refused {
        /// The machine-readable code; match on it.
        code: ErrorCode,
        /// For people; do not parse it.
        message: String,
    },
    /// The connection ended before the reply arrived: the server closed it (`code` is its close
    /// code, when it sent one Warden defines), the network dropped it, or the client was closed.
    /// A command in flight then has an unknown outcome.
    #[error("connection closed{}: {reason}", code.map(|c| format!(" with {c}")).unwrap_or_default())]
    Closed {
        /// The close frame's code, when the server sent one of Warden's.
        code: Option<CloseCode>,
        /// The close frame's reason, or what happened to the connection.
        reason: String,
    },
    /// No reply within the configured time (the request timeout, or the connect timeout).
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// The server refused the WebSocket upgrade with an HTTP answer (docs/protocol.md §1).
    #[error(
        "the server refused the connection with HTTP {status}{}",
        code.map(|c| format!(" ({c})")).unwrap_or_default()
    )]
    Upgrade {
        /// The HTTP status: 401 for a missing, forged or expired token, 404 for a wrong path, 400
        /// for an unsupported subprotocol.
        status: u16,
        /// The `code` of the JSON body, when the body arrived with the answer and names one.
        code: Option<ErrorCode>,
        /// The `message` of the JSON body, when it arrived.
        message: Option<String>,
    },
    /// The server could not be reached, or the WebSocket handshake failed.
    #[error("cannot connect to {url}: {source}")]
    Connect {
        /// The URL tried, without its query string (which may hold a token).
        url: String,
        /// What the network or the WebSocket library said.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A server message could not be decoded.
    #[error("cannot decode a server message: {0}")]
    Decode(String),
    /// The server said something this client does not expect: no `welcome` first, another
    /// protocol version, or a reply of the wrong type.
    #[error("protocol: {0}")]
    Protocol(String),
}

impl ClientError {
    /// Whether a command that failed with this error should be sent again with the **same**
    /// command id.
    ///
    /// `true` when the command may or may not have been applied (the connection dropped or
    /// closed, no reply in time, `unavailable`, `conflict`; and any failure to reconnect after
    /// that), or when the server asks for it to be sent again later (`rate_limited`,
    /// `shutting_down`, `storage_full`: not applied). Resending with the same id is then always safe: the server
    /// applies a command id at most once, and answers a repeat with the first outcome
    /// (`duplicate: true`).
    ///
    /// `false` only for a definite refusal (`insufficient`, `locked`, `forbidden`, …): nothing
    /// was written, and the error is the command's final answer. To try again after one, the
    /// player decides anew and the command gets a fresh id (docs/protocol.md §3, "Refusals are
    /// not remembered").
    pub fn is_unknown_outcome(&self) -> bool {
        match self {
            ClientError::Refused { code, .. } => matches!(
                code,
                ErrorCode::Unavailable
                    | ErrorCode::Conflict
                    | ErrorCode::RateLimited
                    | ErrorCode::ShuttingDown
                    | ErrorCode::StorageFull
            ),
            _ => true,
        }
    }

    /// The server's error code, for a [`Refused`](Self::Refused) request or a refused upgrade.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            ClientError::Refused { code, .. } => Some(*code),
            ClientError::Upgrade { code, .. } => *code,
            _ => None,
        }
    }

    /// Whether this is the loss of the connection (as opposed to an answer from the server).
    pub fn is_connection_lost(&self) -> bool {
        matches!(self, ClientError::Closed { .. })
    }
}

/// How a connection ended, kept to answer every request that was waiting on it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct CloseInfo {
    pub(crate) code: Option<CloseCode>,
    pub(crate) reason: String,
}

impl CloseInfo {
    pub(crate) fn to_error(&self) -> ClientError {
        ClientError::Closed {
            code: self.code,
            reason: self.reason.clone(),
        }
    }

    pub(crate) fn from_error(e: ClientError) -> Self {
        match e {
            ClientError::Closed { code, reason } => CloseInfo { code, reason },
            other => CloseInfo {
                code: None,
                reason: other.to_string(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_definite_refusals_have_a_known_outcome() {
        // Guards the retry rule every caller relies on: a command is resent (same id) after a
        // drop or an "unknown" code, never after a definite refusal.
        let refused = |code| ClientError::Refused {
            code,
            message: String::new(),
        };
        for code in [
            ErrorCode::Unavailable,
            ErrorCode::Conflict,
            ErrorCode::RateLimited,
            ErrorCode::ShuttingDown,
            ErrorCode::StorageFull,
        ] {
            assert!(refused(code).is_unknown_outcome(), "{code}");
        }
        for code in [
            ErrorCode::Insufficient,
            ErrorCode::Locked,
            ErrorCode::Forbidden,
            ErrorCode::NotFound,
            ErrorCode::CommandIdReused,
            ErrorCode::ExceedsMax,
        ] {
            assert!(!refused(code).is_unknown_outcome(), "{code}");
        }
        let closed = ClientError::Closed {
            code: Some(CloseCode::GoingAway),
            reason: "server shutting down".into(),
        };
        assert!(closed.is_unknown_outcome());
        assert!(closed.is_connection_lost());
        assert!(ClientError::Timeout(Duration::from_secs(1)).is_unknown_outcome());
        assert_eq!(
            closed.to_string(),
            "connection closed with 1001 (going_away): server shutting down"
        );
    }
}
