//! The WebSocket close codes a Warden session ends with (docs/protocol.md §7): the one list of
//! them, with their numbers.

/// Why the server closed a session, as the close frame's code says.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, strum::VariantArray, strum::IntoStaticStr)]
#[strum(serialize_all = "snake_case")]
#[repr(u16)]
pub enum CloseCode {
    /// The server is shutting down (standard "going away"): reconnect elsewhere or later.
    GoingAway = 1001,
    /// The WebSocket framing was broken.
    ProtocolError = 1002,
    /// A text frame arrived; the protocol is binary MessagePack only.
    UnsupportedData = 1003,
    /// Too many undecodable messages (protocol abuse).
    Policy = 1008,
    /// A message larger than `limits.max_frame_bytes`.
    TooBig = 1009,
    /// An unexpected server fault.
    Internal = 1011,
    /// Nothing received for `limits.idle_timeout_ms` (not even a pong).
    Idle = 4001,
    /// The session's outbound queue overflowed: reconnect and resubscribe with `from_version`.
    SlowConsumer = 4008,
}

impl CloseCode {
    /// The number sent in the close frame.
    pub fn code(self) -> u16 {
        self as u16
    }

    /// The close code with this number, if it is one of Warden's.
    pub fn from_code(code: u16) -> Option<Self> {
        <Self as strum::VariantArray>::VARIANTS
            .iter()
            .copied()
            .find(|c| c.code() == code)
    }

    /// A short name (`slow_consumer`), for logs.
    pub fn name(self) -> &'static str {
        self.into()
    }
}

impl std::fmt::Display for CloseCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.code(), self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use strum::VariantArray;

    #[test]
    fn every_code_is_found_by_its_number_and_numbers_are_distinct() {
        for &c in CloseCode::VARIANTS {
            assert_eq!(CloseCode::from_code(c.code()), Some(c));
        }
        assert_eq!(CloseCode::SlowConsumer.code(), 4008);
        assert_eq!(CloseCode::from_code(1000), None);
    }
}
