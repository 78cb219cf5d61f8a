//! What a session checks on the way in: the shape of a frame and its envelope, read before the
//! message's full decode (so errors carry the `req`), and the known message kinds.

use rmp_serde::decode::Error as DecodeError;
use strum::VariantArray;
use warden_protocol::{self, ClientMessage, ClientMessageType, ErrorCode, RequestId};

/// Why a frame is not a request: the error a client gets, with its `req` when it could be read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    pub req: Option<RequestId>,
    /// `bad_message` or `unknown_type`.
    pub code: ErrorCode,
    pub message: String,
}

/// Reads one client frame the way a session does: the shape check ([`inspect`]), the message
/// kind, then the full decode. Pure (no I/O), so the fuzz target drives exactly this.
pub fn read_request(bytes: &[u8]) -> Result<ClientMessage, Refusal> {
    let envelope = inspect(bytes)?;
    let req = envelope.req;
    let refuse = |code, message: String| Refusal { req, code, message };
    let kind = match envelope.kind {
        None => return Err(refuse(ErrorCode::BadMessage, "missing field `type`".into())),
        Some(None) => {
            return Err(refuse(
                ErrorCode::BadMessage,
                "`type` must be a string".into(),
            ));
        }
        Some(Some(name)) => match ClientMessageType::VARIANTS
            .iter()
            .copied()
            .find(|t| <&str>::from(*t) == name)
        {
            Some(kind) => kind,
            None => {
                return Err(refuse(
                    ErrorCode::UnknownType,
                    format!("unknown message type {name:?}"),
                ));
            }
        },
    };
    decode_as(kind, bytes).map_err(|e| refuse(ErrorCode::BadMessage, e.to_string()))
}

/// Decodes a frame whose `type` is `kind` straight into that type's struct (the `type` entry
/// skipped), as [`warden_protocol::decode_untagged`] explains; the same message as
/// `warden_protocol::decode::<ClientMessage>` gives, without serde copying the map first to find the tag.
fn decode_as(kind: ClientMessageType, bytes: &[u8]) -> Result<ClientMessage, DecodeError> {
    use warden_protocol::decode_untagged as body;
    Ok(match kind {
        ClientMessageType::Create => ClientMessage::Create(body(bytes)?),
        ClientMessageType::Allocate => ClientMessage::Allocate(body(bytes)?),
        ClientMessageType::Add => ClientMessage::Add(body(bytes)?),
        ClientMessageType::Lock => ClientMessage::Lock(body(bytes)?),
        ClientMessageType::Unlock => ClientMessage::Unlock(body(bytes)?),
        ClientMessageType::Get => ClientMessage::Get(body(bytes)?),
        ClientMessageType::List => ClientMessage::List(body(bytes)?),
        ClientMessageType::History => ClientMessage::History(body(bytes)?),
        ClientMessageType::Subscribe => ClientMessage::Subscribe(body(bytes)?),
        ClientMessageType::Unsubscribe => ClientMessage::Unsubscribe(body(bytes)?),
        ClientMessageType::StateAt => ClientMessage::StateAt(body(bytes)?),
        ClientMessageType::Ping => ClientMessage::Ping(body(bytes)?),
    })
}

/// What [`inspect`] read from a well-shaped frame: its `type` (`Some(None)` when it is there but
/// not a string) and its `req`.
#[derive(Debug)]
pub struct Envelope<'a> {
    pub kind: Option<Option<&'a str>>,
    pub req: Option<RequestId>,
}

/// Deepest nesting accepted (the protocol itself uses two levels: a message and its `params`).
const MAX_DEPTH: usize = 16;

/// Checks a frame is exactly one MessagePack map whose keys, at every level, are strings, and
/// reads its `type` and `req` on the way. Done by hand over the bytes, without allocating: a
/// serde decode would take an integer key for a field position and a sequence for a struct.
pub fn inspect(bytes: &[u8]) -> Result<Envelope<'_>, Refusal> {
    let mut r = Reader { bytes, at: 0 };
    let mut envelope = Envelope {
        kind: None,
        req: None,
    };
    let bad = |req, message: &str| Refusal {
        req,
        code: ErrorCode::BadMessage,
        message: message.into(),
    };
    let entries = match r.map_len() {
        Ok(Some(n)) => n,
        Ok(None) => return Err(bad(None, "not a MessagePack map")),
        Err(e) => return Err(bad(None, e)),
    };
    // Read every top-level entry before judging, so the error carries the `req` wherever it is.
    let mut problem: Option<&'static str> = None;
    let mut req_problem = false;
    for _ in 0..entries {
        let key = match r.str() {
            Ok(Some(key)) => Some(key),
            Ok(None) => {
                problem.get_or_insert("map keys must be strings");
                r.skip(1).map_err(|e| bad(envelope.req, e))?;
                None
            }
            Err(e) => return Err(bad(envelope.req, e)),
        };
        let value = match key {
            Some("type") => r.str().map(|s| {
                envelope.kind = Some(s);
                s.is_some()
            }),
            Some("req") => r.uint().map(|n| {
                envelope.req = n;
                req_problem |= n.is_none();
                n.is_some()
            }),
            _ => Ok(false),
        };
        match value {
            Ok(true) => {}
            // Not the expected kind of value (or any other field): check it as a whole.
            Ok(false) => r.skip(1).map_err(|e| bad(envelope.req, e))?,
            Err(e) => return Err(bad(envelope.req, e)),
        }
    }
    if r.at != bytes.len() {
        problem.get_or_insert("trailing bytes after the message map");
    }
    if req_problem {
        // The request id itself is unreadable: the error cannot name it.
        return Err(bad(None, "req must be an unsigned integer"));
    }
    match problem {
        Some(p) => Err(bad(envelope.req, p)),
        None => Ok(envelope),
    }
}

/// A cursor over MessagePack bytes.
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

const TRUNCATED: &str = "not MessagePack: truncated";

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], &'static str> {
        let end = self.at.checked_add(n).ok_or(TRUNCATED)?;
        let slice = self.bytes.get(self.at..end).ok_or(TRUNCATED)?;
        self.at = end;
        Ok(slice)
    }

    fn byte(&mut self) -> Result<u8, &'static str> {
        Ok(self.take(1)?[0])
    }

    fn peek(&self) -> Result<u8, &'static str> {
        self.bytes.get(self.at).copied().ok_or(TRUNCATED)
    }

    /// A big-endian length of `n` bytes.
    fn len(&mut self, n: usize) -> Result<usize, &'static str> {
        let raw = self.take(n)?;
        let v = raw.iter().fold(0u64, |acc, b| acc << 8 | u64::from(*b));
        usize::try_from(v).map_err(|_| TRUNCATED)
    }

    /// The entry count if a map starts here (consumed), else `None` (nothing consumed).
    fn map_len(&mut self) -> Result<Option<usize>, &'static str> {
        let n = match self.peek()? {
            m @ 0x80..=0x8f => {
                self.at += 1;
                usize::from(m & 0x0f)
            }
            0xde => {
                self.at += 1;
                self.len(2)?
            }
            0xdf => {
                self.at += 1;
                self.len(4)?
            }
            _ => return Ok(None),
        };
        Ok(Some(n))
    }

    /// A UTF-8 string if one starts here (consumed), else `None` (nothing consumed).
    fn str(&mut self) -> Result<Option<&'a str>, &'static str> {
        let start = self.at;
        let n = match self.peek()? {
            m @ 0xa0..=0xbf => {
                self.at += 1;
                usize::from(m & 0x1f)
            }
            0xd9 => {
                self.at += 1;
                self.len(1)?
            }
            0xda => {
                self.at += 1;
                self.len(2)?
            }
            0xdb => {
                self.at += 1;
                self.len(4)?
            }
            _ => return Ok(None),
        };
        match std::str::from_utf8(self.take(n)?) {
            Ok(s) => Ok(Some(s)),
            Err(_) => {
                self.at = start;
                Ok(None)
            }
        }
    }

    /// A non-negative integer if one starts here (consumed), else `None` (nothing consumed).
    fn uint(&mut self) -> Result<Option<u64>, &'static str> {
        let start = self.at;
        let v: Option<u64> = match self.byte()? {
            m @ 0x00..=0x7f => Some(u64::from(m)),
            0xcc => Some(self.len(1)? as u64),
            0xcd => Some(self.len(2)? as u64),
            0xce => Some(self.len(4)? as u64),
            0xcf => {
                let raw = self.take(8)?;
                Some(raw.iter().fold(0u64, |acc, b| acc << 8 | u64::from(*b)))
            }
            0xd0 => u64::try_from(i8::from_be_bytes([self.byte()?])).ok(),
            0xd1 => {
                let raw = self.take(2)?;
                u64::try_from(i16::from_be_bytes([raw[0], raw[1]])).ok()
            }
            0xd2 => {
                let raw = self.take(4)?;
                u64::try_from(i32::from_be_bytes(raw.try_into().map_err(|_| TRUNCATED)?)).ok()
            }
            0xd3 => {
                let raw = self.take(8)?;
                u64::try_from(i64::from_be_bytes(raw.try_into().map_err(|_| TRUNCATED)?)).ok()
            }
            _ => None,
        };
        if v.is_none() {
            self.at = start;
        }
        Ok(v)
    }

    /// Skips one whole value, checking that every map key inside it is a string.
    fn skip(&mut self, depth: usize) -> Result<(), &'static str> {
        if depth > MAX_DEPTH {
            return Err("nested too deeply");
        }
        if let Some(n) = self.map_len()? {
            for _ in 0..n {
                if self.str()?.is_none() {
                    return Err("map keys must be strings");
                }
                self.skip(depth + 1)?;
            }
            return Ok(());
        }
        let marker = self.byte()?;
        let skip = match marker {
            0x00..=0x7f | 0xe0..=0xff | 0xc0 | 0xc2 | 0xc3 => 0,
            0x90..=0x9f | 0xdc | 0xdd => {
                let n = match marker {
                    0xdc => self.len(2)?,
                    0xdd => self.len(4)?,
                    m => usize::from(m & 0x0f),
                };
                for _ in 0..n {
                    self.skip(depth + 1)?;
                }
                0
            }
            m @ 0xa0..=0xbf => usize::from(m & 0x1f),
            0xc4 | 0xd9 => self.len(1)?,
            0xc5 | 0xda => self.len(2)?,
            0xc6 | 0xdb => self.len(4)?,
            0xc7 => self.len(1)? + 1,
            0xc8 => self.len(2)? + 1,
            0xc9 => self.len(4)?.checked_add(1).ok_or(TRUNCATED)?,
            0xca => 4,
            0xcb => 8,
            0xcc | 0xd0 => 1,
            0xcd | 0xd1 => 2,
            0xce | 0xd2 => 4,
            0xcf | 0xd3 => 8,
            0xd4 => 2,
            0xd5 => 3,
            0xd6 => 5,
            0xd7 => 9,
            0xd8 => 17,
            _ => return Err("not MessagePack: reserved byte 0xc1"),
        };
        self.take(skip).map(|_| ())
    }
}
