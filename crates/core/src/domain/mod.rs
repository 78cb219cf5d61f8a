//! Pure game rules: identifiers, the two resource schemas, commands, events, `decide` and `apply`.
//!
//! Nothing in here performs I/O, spawns tasks or reads a clock: time arrives as a [`Timestamp`]
//! argument, so every rule is a plain function that tests can drive through any history.

mod catalogue;
mod command;
mod decide;
mod event;
mod principal;
mod regen;
mod rejection;
mod resend;
mod resource;

pub use catalogue::{
    Catalogue, CatalogueError, CatalogueType, MAX_NAME_BYTES, PerOwner, validate_params,
};
pub use command::{
    AddResource, AllocateResource, Command, CommandKind, CreateResource, LockResource, MAX_LOCK_MS,
    MAX_REASON_BYTES, UnlockResource,
};
pub use decide::{apply, decide, decide_create, replay, stamp};
pub use event::{Balance, EVENT_SCHEMA_VERSION, EventEnvelope, Issuer, ResourceEvent};
pub use principal::Principal;
pub use regen::{MAX_REGEN_MILLI, MICRO_PER_UNIT, accrue};
pub use rejection::Rejection;
pub use resend::is_recorded_as;
pub use resource::{Audience, ClientSchema, Lock, ServerResource};
// The vocabulary the wire carries (ids, time, roles, the client schema, a new resource's
// parameters) is defined once, in the protocol crate; the rules use it as it is.
pub use warden_protocol::{
    ClientResource, CommandId, PlayerId, ResourceId, ResourceParams, Role, Timestamp, Wallet,
};
