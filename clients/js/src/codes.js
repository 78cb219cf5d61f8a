// Generated from the warden-protocol crate (crates/protocol: ErrorCode, CloseCode); do not
// edit. `WARDEN_WRITE_JS_CODES=1 cargo test -p warden-protocol --test js_codes` rewrites it.

/** Every error code of the protocol (docs/protocol.md §5), by its Rust name. */
export const ErrorCode = Object.freeze({
  BadMessage: "bad_message",
  UnknownType: "unknown_type",
  RateLimited: "rate_limited",
  TooManySubscriptions: "too_many_subscriptions",
  UnknownSubscription: "unknown_subscription",
  InvalidFromVersion: "invalid_from_version",
  SubscriptionFailed: "subscription_failed",
  NotFound: "not_found",
  Forbidden: "forbidden",
  InvalidAmount: "invalid_amount",
  Overflow: "overflow",
  Insufficient: "insufficient",
  ExceedsMax: "exceeds_max",
  Locked: "locked",
  AlreadyLocked: "already_locked",
  NotLocked: "not_locked",
  NotLockHolder: "not_lock_holder",
  InvalidDuration: "invalid_duration",
  ReasonTooLong: "reason_too_long",
  UnknownResourceType: "unknown_resource_type",
  InvalidParams: "invalid_params",
  AlreadyExists: "already_exists",
  InvalidVersion: "invalid_version",
  BeforeCreation: "before_creation",
  CommandIdReused: "command_id_reused",
  Conflict: "conflict",
  Unavailable: "unavailable",
  StorageFull: "storage_full",
  ShuttingDown: "shutting_down",
  Unauthorized: "unauthorized",
  TokenExpired: "token_expired",
  UnsupportedProtocol: "unsupported_protocol",
  Internal: "internal",
});

/** Every close code a session ends with (docs/protocol.md §7), by its Rust name. */
export const CloseCode = Object.freeze({
  GoingAway: 1001,
  ProtocolError: 1002,
  UnsupportedData: 1003,
  Policy: 1008,
  TooBig: 1009,
  Internal: 1011,
  Idle: 4001,
  SlowConsumer: 4008,
});
