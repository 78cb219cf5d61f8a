//! The fuzz engine for a session's inbound path, on the stable toolchain: a seeded mutation loop
//! over valid client frames, structured random MessagePack and raw bytes, fed to
//! `warden_net::inbound::read_request` (shape check, envelope, decode) and, for what it
//! accepts, to the domain's validation (`decide` on a live resource) and a re-encode round trip.
//!
//! Included by `tests/fuzz_inbound.rs` (a short run in the normal suite) and
//! `examples/fuzz_inbound.rs` (long runs). No panic, an error code from the documented set for
//! every refusal, and every accepted message re-encoding to itself are the properties checked.
// Included by path into a test and an example (binaries): `pub` only says "used by the file that
// includes this".
#![allow(unreachable_pub, missing_debug_implementations)]

use rmpv::Value;
use std::panic::AssertUnwindSafe;
use warden_core::domain::ResourceParams;
use warden_core::domain::{
    self, Balance, Catalogue, Command, CommandId, EVENT_SCHEMA_VERSION, EventEnvelope, PlayerId,
    Principal, ResourceEvent, ResourceId, ServerResource, Timestamp,
};
use warden_net::inbound::{Envelope, Refusal, inspect, read_request};
use warden_protocol::{self, ClientMessage, ErrorCode};

/// What a run found.
#[derive(Debug, Default)]
pub struct Findings {
    pub inputs: u64,
    pub accepted: u64,
    pub refused: u64,
    /// Inputs that panicked, as hex (the first few).
    pub panics: Vec<String>,
    pub panic_count: u64,
    /// Property violations (a refusal with an unknown code, a round trip that changed the
    /// message), described (the first few).
    pub violations: Vec<String>,
    pub violation_count: u64,
}

/// A small, fast, seeded generator (xorshift64*): the same seed gives the same inputs.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed.max(1))
    }
    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    fn chance(&mut self, one_in: u64) -> bool {
        self.next().is_multiple_of(one_in)
    }
}

/// Valid frames of every kind, with edge values: the seeds mutations start from.
pub fn corpus() -> Vec<Vec<u8>> {
    let rid = ResourceId::new();
    let cid = CommandId::new;
    let msgs = vec![
        ClientMessage::Create(warden_protocol::Create {
            name: None,
            req: 1,
            command_id: cid(),
            resource_type: "gold".into(),
            owner: None,
            params: None,
        }),
        ClientMessage::Create(warden_protocol::Create {
            name: None,
            req: u64::MAX,
            command_id: cid(),
            resource_type: "tokens".into(),
            owner: Some(PlayerId::new("bob")),
            params: Some(ResourceParams {
                initial_amount: 3,
                max_amount: u64::MAX,
                regen_milli: 1_000_000,
            }),
        }),
        ClientMessage::Allocate(warden_protocol::Allocate {
            req: 7,
            command_id: cid(),
            resource_id: rid,
            amount: 200,
            reason: "Purchase item".into(),
        }),
        ClientMessage::Add(warden_protocol::Add {
            req: 8,
            command_id: cid(),
            resource_id: rid,
            amount: u64::MAX,
            reason: String::new(),
        }),
        ClientMessage::Lock(warden_protocol::Lock {
            req: 9,
            command_id: cid(),
            resource_id: rid,
            reason: "raid".into(),
            duration_ms: 86_400_000,
        }),
        ClientMessage::Unlock(warden_protocol::Unlock {
            req: 10,
            command_id: cid(),
            resource_id: rid,
        }),
        ClientMessage::Get(warden_protocol::Get {
            req: 11,
            resource_id: rid,
        }),
        ClientMessage::List(warden_protocol::List {
            req: 12,
            owner: Some(PlayerId::new("alice")),
        }),
        ClientMessage::History(warden_protocol::History {
            req: 13,
            resource_id: rid,
            after_version: 5,
            limit: Some(1000),
        }),
        ClientMessage::Subscribe(warden_protocol::Subscribe {
            req: 14,
            resource_id: Some(rid),
            owner: None,
            from_version: Some(3),
        }),
        ClientMessage::Subscribe(warden_protocol::Subscribe {
            req: 15,
            resource_id: None,
            owner: Some(PlayerId::new("alice")),
            from_version: None,
        }),
        ClientMessage::Unsubscribe(warden_protocol::Unsubscribe { req: 16, sub: 1 }),
        ClientMessage::Ping(warden_protocol::Ping { req: 17 }),
    ];
    msgs.iter().map(warden_protocol::encode).collect()
}

/// Bytes MessagePack gives meaning to: markers and boundaries.
const INTERESTING: &[u8] = &[
    0x00, 0x01, 0x7f, 0x80, 0x8f, 0x90, 0x9f, 0xa0, 0xbf, 0xc0, 0xc1, 0xc2, 0xc3, 0xc4, 0xc7, 0xca,
    0xcb, 0xcc, 0xcf, 0xd0, 0xd3, 0xd4, 0xd8, 0xd9, 0xdb, 0xdc, 0xdd, 0xde, 0xdf, 0xe0, 0xff,
];

/// One mutation of `frame` (changed in place).
fn mutate(rng: &mut Rng, frame: &mut Vec<u8>, corpus: &[Vec<u8>]) {
    let len = frame.len();
    match rng.below(9) {
        0 if len > 0 => {
            let i = rng.below(len);
            frame[i] ^= 1 << rng.below(8);
        }
        1 if len > 0 => {
            let i = rng.below(len);
            frame[i] = INTERESTING[rng.below(INTERESTING.len())];
        }
        2 => {
            let i = rng.below(len + 1);
            frame.insert(i, INTERESTING[rng.below(INTERESTING.len())]);
        }
        3 if len > 0 => {
            let i = rng.below(len);
            let n = 1 + rng.below((len - i).min(8));
            frame.drain(i..i + n);
        }
        4 => frame.truncate(rng.below(len + 1)),
        5 if len > 0 => {
            // Copy a region elsewhere (repeats fields, nests maps).
            let a = rng.below(len);
            let b = a + rng.below(len - a).min(32);
            let piece = frame[a..b].to_vec();
            let at = rng.below(len + 1);
            frame.splice(at..at, piece);
        }
        6 => {
            // Splice in part of another valid frame.
            let other = &corpus[rng.below(corpus.len())];
            let a = rng.below(other.len());
            let at = rng.below(len + 1);
            frame.splice(at..at, other[a..].iter().copied());
        }
        7 if len > 0 => {
            // A big-endian 16- or 32-bit length or value: boundary numbers.
            let i = rng.below(len);
            let v: u32 = [0, 1, 0x7f, 0x80, 0xff, 0xffff, 0xffff_ffff][rng.below(7)];
            for (k, b) in v.to_be_bytes().iter().enumerate() {
                if let Some(slot) = frame.get_mut(i + k) {
                    *slot = *b;
                }
            }
        }
        _ => {
            let i = rng.below(len + 1);
            frame.insert(i, rng.next() as u8);
        }
    }
}

/// A random MessagePack value, mostly map-shaped with protocol-like keys.
fn random_value(rng: &mut Rng, depth: usize) -> Value {
    const KEYS: &[&str] = &[
        "type",
        "req",
        "command_id",
        "resource_id",
        "amount",
        "reason",
        "owner",
        "params",
        "initial_amount",
        "max_amount",
        "regen_milli",
        "duration_ms",
        "from_version",
        "after_version",
        "limit",
        "sub",
        "resource_type",
    ];
    // Every real type, and two near misses.
    let types: Vec<&str> = ClientMessage::TYPES
        .iter()
        .copied()
        .chain(["", "PING"])
        .collect();
    let leaf = depth > 3 || rng.chance(3);
    match rng.below(if leaf { 9 } else { 11 }) {
        0 => Value::Nil,
        1 => Value::Boolean(rng.chance(2)),
        2 => Value::from(rng.next() >> rng.below(64)),
        3 => Value::from(-((rng.next() >> (1 + rng.below(63))) as i64)),
        4 => Value::F64(f64::from_bits(rng.next())),
        5 => Value::from(types[rng.below(types.len())]),
        6 => Value::from(ResourceId::new().to_string()),
        7 => Value::Binary((0..rng.below(20)).map(|_| rng.next() as u8).collect()),
        8 => Value::Ext(rng.next() as i8, vec![rng.next() as u8; rng.below(5)]),
        9 => Value::Array(
            (0..rng.below(4))
                .map(|_| random_value(rng, depth + 1))
                .collect(),
        ),
        _ => Value::Map(
            (0..rng.below(8))
                .map(|_| {
                    let key = if rng.chance(8) {
                        random_value(rng, depth + 1)
                    } else {
                        Value::from(KEYS[rng.below(KEYS.len())])
                    };
                    (key, random_value(rng, depth + 1))
                })
                .collect(),
        ),
    }
}

/// A valid frame with one field's value changed: mostly a value of the same kind (another
/// number, another string, another id), sometimes anything, or a field dropped or added.
fn mutate_field(rng: &mut Rng, frame: &[u8]) -> Vec<u8> {
    let Ok(Value::Map(mut fields)) = rmpv::decode::read_value(&mut &frame[..]) else {
        return frame.to_vec();
    };
    for _ in 0..1 + rng.below(2) {
        let i = rng.below(fields.len());
        match rng.below(10) {
            0 => {
                fields.remove(i);
            }
            1 => fields.push((Value::from("amount"), random_value(rng, 2))),
            2 | 3 => fields[i].1 = random_value(rng, 2),
            _ => {
                let value = &fields[i].1;
                fields[i].1 = if value.is_u64() {
                    Value::from(match rng.below(4) {
                        0 => 0,
                        1 => u64::MAX - rng.below(2) as u64,
                        _ => rng.next() >> rng.below(64),
                    })
                } else if value.is_str() {
                    let n = [0, 1, 36, 64, 256, 257, 300][rng.below(7)];
                    Value::from(
                        (0..n)
                            .map(|_| char::from(b'a' + rng.below(26) as u8))
                            .collect::<String>(),
                    )
                } else {
                    random_value(rng, 2)
                };
            }
        }
        if fields.is_empty() {
            break;
        }
    }
    let mut bytes = Vec::new();
    rmpv::encode::write_value(&mut bytes, &Value::Map(fields)).expect("into a Vec");
    bytes
}

/// The next input: a mutated valid frame (bytes or one field), a random structured message, or
/// raw bytes.
pub fn next_input(rng: &mut Rng, corpus: &[Vec<u8>]) -> Vec<u8> {
    match rng.below(10) {
        0..=2 => {
            let seed = &corpus[rng.below(corpus.len())];
            mutate_field(rng, seed)
        }
        3..=5 => {
            let mut frame = corpus[rng.below(corpus.len())].clone();
            for _ in 0..1 + rng.below(4) {
                mutate(rng, &mut frame, corpus);
            }
            frame
        }
        6..=8 => {
            let mut fields = vec![(
                Value::from("type"),
                random_value(rng, 3).as_str().map_or_else(
                    || Value::from(["allocate", "subscribe", "create"][rng.below(3)]),
                    Value::from,
                ),
            )];
            if let Value::Map(more) = random_value(rng, 0) {
                fields.extend(more);
            }
            let mut bytes = Vec::new();
            rmpv::encode::write_value(&mut bytes, &Value::Map(fields)).expect("into a Vec");
            if rng.chance(4) {
                mutate(rng, &mut bytes, corpus);
            }
            bytes
        }
        _ => (0..rng.below(64)).map(|_| rng.next() as u8).collect(),
    }
}

/// The resource commands are validated against: alice's gold, locked or not.
pub fn sample_state(locked: bool) -> ServerResource {
    let id = ResourceId::new();
    let at = Timestamp(1_767_225_600_000);
    let mut events = vec![ResourceEvent::ResourceCreated {
        name: None,
        owner: PlayerId::new("alice"),
        resource_type: "gold".into(),
        max_amount: 5000,
        regen_milli: 500,
        balance: Balance {
            amount: 1000,
            regen_carry: 0,
            regen_at: at,
        },
        by: PlayerId::new("alice"),
    }];
    if locked {
        events.push(ResourceEvent::ResourceLocked {
            holder: PlayerId::new("alice"),
            reason: "raid".into(),
            expires_at: Timestamp(at.0 + 60_000),
        });
    }
    let stamped: Vec<EventEnvelope> = events
        .into_iter()
        .zip(1..)
        .map(|(event, version)| EventEnvelope {
            by_role: None,
            resource_id: id,
            version,
            command_id: CommandId::new(),
            at,
            schema: EVENT_SCHEMA_VERSION,
            event,
        })
        .collect();
    domain::replay(None, &stamped).expect("a created resource")
}

/// The codes a refused frame may carry (docs/protocol.md §5).
const REFUSAL_CODES: &[ErrorCode] = &[ErrorCode::BadMessage, ErrorCode::UnknownType];

/// Runs one input through the inbound path and the domain's validation; `Err` describes a
/// property violation.
fn check(bytes: &[u8], states: &[ServerResource], catalogue: &Catalogue) -> Result<bool, String> {
    let read = read_request(bytes);
    // The session decodes a frame straight into its type's struct; serde's decode of the tagged
    // enum is the reference: on every frame that passes the shape check with a known `type`,
    // both accept the same message or both refuse.
    if let Ok(Envelope {
        kind: Some(Some(kind)),
        ..
    }) = inspect(bytes)
        && ClientMessage::TYPES.contains(&kind)
    {
        let reference = warden_protocol::decode::<ClientMessage>(bytes);
        match (&read, &reference) {
            (Ok(a), Ok(b)) if a == b => {}
            (Err(_), Err(_)) => {}
            _ => return Err(format!("read {read:?}, reference decode {reference:?}")),
        }
    }
    let msg = match read {
        Ok(msg) => msg,
        Err(Refusal { code, message, .. }) => {
            if !REFUSAL_CODES.contains(&code) || message.is_empty() {
                return Err(format!("refusal {code:?} {message:?}"));
            }
            return Ok(false);
        }
    };
    // Whatever is accepted re-encodes to a frame that reads back as the same message.
    let again = read_request(&warden_protocol::encode(&msg))
        .map_err(|r| format!("accepted {msg:?}, but its re-encoding is refused: {r:?}"))?;
    if again != msg {
        return Err(format!("round trip changed {msg:?} into {again:?}"));
    }
    let now = Timestamp(1_767_225_630_000);
    let command = match msg {
        ClientMessage::Create(warden_protocol::Create {
            resource_type,
            owner,
            params,
            ..
        }) => {
            let create = domain::CreateResource {
                name: None,
                resource_type,
                owner,
                params,
            };
            for who in [Principal::player("alice"), Principal::service("shop")] {
                let _ = domain::decide_create(catalogue, &who, &create, now);
            }
            return Ok(true);
        }
        ClientMessage::Allocate(warden_protocol::Allocate {
            resource_id,
            amount,
            reason,
            ..
        }) => Command::Allocate(domain::AllocateResource {
            resource_id,
            amount,
            reason,
        }),
        ClientMessage::Add(warden_protocol::Add {
            resource_id,
            amount,
            reason,
            ..
        }) => Command::Add(domain::AddResource {
            resource_id,
            amount,
            reason,
        }),
        ClientMessage::Lock(warden_protocol::Lock {
            resource_id,
            reason,
            duration_ms,
            ..
        }) => Command::Lock(domain::LockResource {
            resource_id,
            reason,
            duration_ms,
        }),
        ClientMessage::Unlock(warden_protocol::Unlock { resource_id, .. }) => {
            Command::Unlock(domain::UnlockResource { resource_id })
        }
        _ => return Ok(true),
    };
    for state in states {
        for who in [Principal::player("alice"), Principal::player("bob")] {
            if let Ok(events) = domain::decide(state, &who, &command, now) {
                // Decided events always apply.
                let stamped = domain::stamp(
                    state.id,
                    state.version,
                    CommandId::new(),
                    warden_core::domain::Role::Player,
                    now,
                    events,
                );
                if domain::replay(Some(state.clone()), &stamped).is_none() {
                    return Err(format!("{command:?} decided events that do not apply"));
                }
            }
        }
    }
    Ok(true)
}

/// Runs `inputs` inputs from `seed`, calling `progress` every 1 % or so.
pub fn run(seed: u64, inputs: u64, mut progress: impl FnMut(&Findings)) -> Findings {
    let corpus = corpus();
    let states = [sample_state(false), sample_state(true)];
    let catalogue = Catalogue::default();
    let mut rng = Rng::new(seed);
    let mut findings = Findings::default();
    let step = (inputs / 100).max(1);
    // Panics are counted, not printed one by one.
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    for n in 0..inputs {
        let input = next_input(&mut rng, &corpus);
        findings.inputs += 1;
        match std::panic::catch_unwind(AssertUnwindSafe(|| check(&input, &states, &catalogue))) {
            Ok(Ok(true)) => findings.accepted += 1,
            Ok(Ok(false)) => findings.refused += 1,
            Ok(Err(violation)) => {
                findings.violation_count += 1;
                if findings.violations.len() < 5 {
                    findings
                        .violations
                        .push(format!("{violation} (input {})", hex(&input)));
                }
            }
            Err(_) => {
                findings.panic_count += 1;
                if findings.panics.len() < 5 {
                    findings.panics.push(hex(&input));
                }
            }
        }
        if (n + 1) % step == 0 {
            progress(&findings);
        }
    }
    std::panic::set_hook(hook);
    findings
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
