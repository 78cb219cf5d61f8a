//! Keys and stored values: how ids, events, snapshots, views and command records are laid out in
//! fjall, and what a reader refuses.

use super::*;
use warden_core::domain::Role;

/// What is wrong with a stored key or value when the decoder itself has nothing to say.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Layout {
    #[error("unknown stored format {0}")]
    UnknownFormat(u8),
    #[error("empty value")]
    Empty,
    #[error("{found} bytes where {expected} belong")]
    Length { expected: usize, found: usize },
    #[error("{found} bytes where at least {at_least} belong")]
    Short { at_least: usize, found: usize },
}

/// A `stale_views` key: the writer's count of batches with views since the oldest record still
/// there (big-endian u64).
pub(crate) fn decode_stale_seq(key: &[u8]) -> Result<u64, StoreError> {
    let seq: [u8; 8] = key.try_into().map_err(|_| {
        StoreError::corrupt(
            "stale-views key",
            Layout::Length {
                expected: 8,
                found: key.len(),
            },
        )
    })?;
    Ok(u64::from_be_bytes(seq))
}

/// A `stale_views` value: the ids (16 bytes each, as is) of the resources one batch touched.
pub(crate) fn decode_stale_ids(bytes: &[u8]) -> Result<Vec<ResourceId>, StoreError> {
    if !bytes.len().is_multiple_of(16) {
        return Err(StoreError::corrupt(
            "stale-views record",
            Layout::Length {
                expected: bytes.len() / 16 * 16 + 16,
                found: bytes.len(),
            },
        ));
    }
    Ok(bytes
        .chunks_exact(16)
        .map(|id| {
            let mut raw = [0u8; 16];
            raw.copy_from_slice(id);
            ResourceId(uuid::Uuid::from_bytes(raw))
        })
        .collect())
}

/// A resource id as keys hold it ([`KEY_LAYOUT`] 2): its two 8-byte halves swapped (a rotation
/// by 64 bits), so the second, random half comes first.
pub(crate) fn resource_key(id: ResourceId) -> [u8; 16] {
    id.0.as_u128().rotate_left(64).to_be_bytes()
}

/// The resource id a key's first 16 bytes hold: the same swap undoes [`resource_key`].
pub(crate) fn resource_from_key(key: &[u8; 16]) -> ResourceId {
    ResourceId(uuid::Uuid::from_u128(
        u128::from_be_bytes(*key).rotate_left(64),
    ))
}

pub(crate) fn event_key(id: ResourceId, version: u64) -> [u8; 24] {
    let mut key = [0u8; 24];
    key[..16].copy_from_slice(&resource_key(id));
    key[16..].copy_from_slice(&version.to_be_bytes());
    key
}

/// Owner, a zero byte, then the resource id (player ids hold no zero byte: tokens are text).
pub(crate) fn owner_key(owner: &PlayerId, id: ResourceId) -> Vec<u8> {
    let mut key = Vec::with_capacity(owner.as_str().len() + 17);
    key.extend_from_slice(owner.as_str().as_bytes());
    key.push(0);
    key.extend_from_slice(id.0.as_bytes());
    key
}

/// An event as stored under its (resource, version) key: the rest of the envelope.
#[derive(serde::Serialize)]
pub(crate) struct StoredEventRef<'a> {
    command_id: CommandId,
    at: Timestamp,
    schema: u16,
    event: &'a ResourceEvent,
    by_role: Option<u8>,
}

#[derive(serde::Deserialize)]
pub(crate) struct StoredEvent {
    command_id: CommandId,
    at: Timestamp,
    schema: u16,
    event: ResourceEvent,
    /// Added later, so last and defaulted: an event stored before it reads with no role.
    /// One byte ([`role_code`]), not the role's name: it is on every event.
    #[serde(default)]
    by_role: Option<u8>,
}

/// A role as an event stores it.
fn role_code(role: Role) -> u8 {
    match role {
        Role::Player => 0,
        Role::Spectator => 1,
        Role::Service => 2,
    }
}

/// The role a stored code names; an unknown code reads as no role (as an older event does).
fn role_of(code: u8) -> Option<Role> {
    match code {
        0 => Some(Role::Player),
        1 => Some(Role::Spectator),
        2 => Some(Role::Service),
        _ => None,
    }
}

/// The value after its format byte, if the format is one this version reads.
pub(crate) fn body(bytes: &[u8]) -> Result<&[u8], Layout> {
    match bytes.split_first() {
        Some((&FORMAT_V1, rest)) => Ok(rest),
        Some((&other, _)) => Err(Layout::UnknownFormat(other)),
        None => Err(Layout::Empty),
    }
}

/// Format byte and the rest of the envelope, encoded in `scratch` (kept by the caller, so an event
/// costs the one allocation of its stored value).
pub(crate) fn encode_event(
    e: &EventEnvelope,
    scratch: &mut Vec<u8>,
) -> Result<fjall::Slice, StoreError> {
    let stored = StoredEventRef {
        command_id: e.command_id,
        at: e.at,
        schema: e.schema,
        event: &e.event,
        by_role: e.by_role.map(role_code),
    };
    scratch.clear();
    scratch.push(FORMAT_V1);
    rmp_serde::encode::write(scratch, &stored).map_err(encode("event"))?;
    Ok(fjall::Slice::from(scratch.as_slice()))
}

pub(crate) fn decode_event(key: &[u8], value: &[u8]) -> Result<EventEnvelope, StoreError> {
    let (id, version) = split_event_key(key)?;
    let stored: StoredEvent =
        rmp_serde::from_slice(body(value).map_err(corrupt("event"))?).map_err(corrupt("event"))?;
    Ok(EventEnvelope {
        resource_id: id,
        version,
        command_id: stored.command_id,
        at: stored.at,
        schema: stored.schema,
        event: stored.event,
        by_role: stored.by_role.and_then(role_of),
    })
}

pub(crate) fn split_event_key(key: &[u8]) -> Result<(ResourceId, u64), StoreError> {
    let key: &[u8; 24] = key.try_into().map_err(|_| {
        StoreError::corrupt(
            "event key",
            Layout::Length {
                expected: 24,
                found: key.len(),
            },
        )
    })?;
    let (id, version) = key.split_at(16);
    let id = resource_from_key(id.try_into().map_err(corrupt("event key"))?);
    let version = u64::from_be_bytes(version.try_into().map_err(corrupt("event key"))?);
    Ok((id, version))
}

/// Format byte, the version (big-endian, so a head is read without decoding the rest), state.
pub(crate) fn encode_snapshot(state: &ServerResource) -> Result<Vec<u8>, StoreError> {
    let body = rmp_serde::to_vec(state).map_err(encode("snapshot"))?;
    let mut out = Vec::with_capacity(body.len() + 9);
    out.push(FORMAT_V1);
    out.extend_from_slice(&state.version.to_be_bytes());
    out.extend_from_slice(&body);
    Ok(out)
}

pub(crate) fn decode_snapshot_version(bytes: &[u8]) -> Result<u64, StoreError> {
    let rest = body(bytes).map_err(corrupt("snapshot"))?;
    let version: [u8; 8] = rest
        .get(..8)
        .and_then(|v| v.try_into().ok())
        .ok_or_else(|| {
            StoreError::corrupt(
                "snapshot",
                Layout::Short {
                    at_least: 9,
                    found: bytes.len(),
                },
            )
        })?;
    Ok(u64::from_be_bytes(version))
}

pub(crate) fn decode_snapshot(bytes: &[u8]) -> Result<(u64, ServerResource), StoreError> {
    let version = decode_snapshot_version(bytes)?;
    // Past the format byte and the version, both checked just now.
    let state: ServerResource = rmp_serde::from_slice(&bytes[9..]).map_err(corrupt("snapshot"))?;
    Ok((version, state))
}

/// A view as stored in format 2: [`ClientResource`]'s fields in this order, none left out (the
/// wire form leaves empty options out, which a positional layout cannot express). Borrowed to
/// write (`StoredView<&PlayerId, &str>`), owned to read (`StoredView<PlayerId, String>`).
#[derive(serde::Serialize, serde::Deserialize)]
pub(crate) struct StoredView<P, S> {
    id: ResourceId,
    owner: P,
    resource_type: S,
    amount: u64,
    amount_at: Timestamp,
    max_amount: u64,
    regen_milli: Option<u64>,
    locked: bool,
    lock_reason: Option<S>,
    lock_expires_at: Option<Timestamp>,
    version: u64,
    updated_at: Timestamp,
    // Added later, so last and defaulted: a view stored before them reads with no name and no
    // carry.
    #[serde(default = "Option::default")]
    name: Option<S>,
    #[serde(default)]
    regen_carry: Option<u32>,
}

pub(crate) fn encode_view(view: &ClientResource) -> Result<Vec<u8>, StoreError> {
    // Destructured whole, here and in `decode_view`: a field added to the view and not to its
    // stored form does not compile.
    let ClientResource {
        id,
        owner,
        resource_type,
        amount,
        amount_at,
        max_amount,
        regen_milli,
        locked,
        lock_reason,
        lock_expires_at,
        version,
        updated_at,
        name,
        regen_carry,
    } = view;
    let stored = StoredView {
        id: *id,
        owner,
        resource_type: resource_type.as_str(),
        amount: *amount,
        amount_at: *amount_at,
        max_amount: *max_amount,
        regen_milli: *regen_milli,
        locked: *locked,
        lock_reason: lock_reason.as_deref(),
        lock_expires_at: *lock_expires_at,
        version: *version,
        updated_at: *updated_at,
        name: name.as_deref(),
        regen_carry: *regen_carry,
    };
    let mut out = Vec::with_capacity(96);
    out.push(FORMAT_V2);
    rmp_serde::encode::write(&mut out, &stored).map_err(encode("view"))?;
    Ok(out)
}

pub(crate) fn decode_view(bytes: &[u8]) -> Result<ClientResource, StoreError> {
    match bytes.split_first() {
        // Format 1: the named map of `ClientResource` itself.
        Some((&FORMAT_V1, rest)) => rmp_serde::from_slice(rest).map_err(corrupt("view")),
        Some((&FORMAT_V2, rest)) => {
            let StoredView::<PlayerId, String> {
                id,
                owner,
                resource_type,
                amount,
                amount_at,
                max_amount,
                regen_milli,
                locked,
                lock_reason,
                lock_expires_at,
                version,
                updated_at,
                name,
                regen_carry,
            } = rmp_serde::from_slice(rest).map_err(corrupt("view"))?;
            Ok(ClientResource {
                name: name.map(Into::into),
                regen_carry,
                id,
                owner,
                resource_type,
                amount,
                amount_at,
                max_amount,
                regen_milli,
                locked,
                lock_reason,
                lock_expires_at,
                version,
                updated_at,
            })
        }
        Some((&other, _)) => Err(StoreError::corrupt("view", Layout::UnknownFormat(other))),
        None => Err(StoreError::corrupt("view", Layout::Empty)),
    }
}

/// Resource id, first version, last version: 32 bytes.
pub(crate) fn encode_command(rec: &CommitRecord) -> [u8; 32] {
    let mut out = [0u8; 32];
    out[..16].copy_from_slice(rec.resource_id.0.as_bytes());
    out[16..24].copy_from_slice(&rec.first_version.to_be_bytes());
    out[24..].copy_from_slice(&rec.last_version.to_be_bytes());
    out
}

pub(crate) fn decode_command(
    command_id: CommandId,
    bytes: &[u8],
) -> Result<CommitRecord, StoreError> {
    let bytes: &[u8; 32] = bytes.try_into().map_err(|_| {
        StoreError::corrupt(
            "command record",
            Layout::Length {
                expected: 32,
                found: bytes.len(),
            },
        )
    })?;
    let resource = uuid::Uuid::from_slice(&bytes[..16]).map_err(corrupt("command record"))?;
    let first = u64::from_be_bytes(
        bytes[16..24]
            .try_into()
            .map_err(corrupt("command record"))?,
    );
    let last = u64::from_be_bytes(bytes[24..].try_into().map_err(corrupt("command record"))?);
    Ok(CommitRecord {
        resource_id: ResourceId(resource),
        command_id,
        first_version: first,
        last_version: last,
    })
}
