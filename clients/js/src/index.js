// Warden client for browsers and Node ≥ 20: one promise per command and query, command ids kept
// across retries, reconnection with back-off, and subscriptions that resume where they left off.
//
// Written from docs/protocol.md (protocol version 1). Types are in index.d.ts.

import { Decoder, Encoder } from "@msgpack/msgpack";
import { CloseCode, ErrorCode } from "./codes.js";

export { CloseCode, ErrorCode };

/** The protocol version this client speaks. */
export const PROTOCOL_VERSION = 1;

/**
 * The wire's integers are unsigned 64-bit. A JavaScript number is exact only up to 2^53, so
 * integers travel as MessagePack integers of the width they need: a number up to 2^53 as
 * itself, anything above it as a `bigint` (pass one for an amount above 2^53; the client refuses a
 * number there, which would arrive rounded). Replies give a number where it is exact and a
 * `bigint` above 2^53, so amounts are never rounded.
 */
const encoder = new Encoder({ useBigInt64: true });
const decoder = new Decoder({ useBigInt64: true });

/** `value` ready for the encoder: whole numbers of 2^32 and up as `bigint` (the encoder writes
 * numbers above 2^32 as floats when it takes bigints), unsafe whole numbers refused. */
function wireValue(value, path) {
  if (typeof value === "number") {
    if (Number.isInteger(value) && value >= 2 ** 32) {
      if (!Number.isSafeInteger(value)) {
        throw new WardenError(
          "bad_message",
          `${path} is ${value}, above 2^53, where a number is not exact: pass a BigInt`,
        );
      }
      return BigInt(value);
    }
    return value;
  }
  if (Array.isArray(value)) return value.map((v, i) => wireValue(v, `${path}[${i}]`));
  if (value && typeof value === "object") {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, wireValue(v, k)]));
  }
  return value;
}

/** A decoded message with every `bigint` that a number holds exactly turned into that number. */
function fromWire(value) {
  if (typeof value === "bigint") {
    return value <= BigInt(Number.MAX_SAFE_INTEGER) && value >= BigInt(Number.MIN_SAFE_INTEGER)
      ? Number(value)
      : value;
  }
  if (Array.isArray(value)) return value.map(fromWire);
  if (value && typeof value === "object") {
    for (const k of Object.keys(value)) value[k] = fromWire(value[k]);
  }
  return value;
}

/** Encodes a client message for the wire. */
export function encodeMessage(body) {
  return encoder.encode(wireValue(body, "message"));
}

/** Decodes a server message (numbers where exact, `bigint` above 2^53). */
export function decodeMessage(bytes) {
  return fromWire(decoder.decode(bytes));
}

/** Error codes after which a command is sent again, with the same command id. */
const RETRYABLE = new Set([
  ErrorCode.Conflict,
  ErrorCode.Unavailable,
  ErrorCode.ShuttingDown,
  ErrorCode.RateLimited,
  ErrorCode.StorageFull,
]);

/** A request the server refused, or one that could not be completed; `code` is the protocol's. */
export class WardenError extends Error {
  /**
   * @param {string} code a code of docs/protocol.md §5, or `timeout`, `closed`, `protocol`
   * @param {string} message
   * @param {{req?: number, commandId?: string}} [extra]
   */
  constructor(code, message, extra = {}) {
    super(message);
    this.name = "WardenError";
    this.code = code;
    this.req = extra.req;
    this.commandId = extra.commandId;
  }
}

/** A request got no outcome in time. For a command, retry it with `err.commandId`. */
export class TimeoutError extends WardenError {
  constructor(message, extra) {
    super("timeout", message, extra);
    this.name = "TimeoutError";
  }
}

/** A fresh UUID (v4) for a command id. */
export function newCommandId() {
  if (globalThis.crypto?.randomUUID) return globalThis.crypto.randomUUID();
  const b = new Uint8Array(16);
  globalThis.crypto.getRandomValues(b);
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const h = [...b].map((x) => x.toString(16).padStart(2, "0")).join("");
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

async function defaultWebSocket() {
  if (globalThis.WebSocket) return globalThis.WebSocket;
  const ws = await import("ws");
  return ws.WebSocket ?? ws.default;
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/**
 * Connects and waits for the server's `welcome`. While the server cannot be reached (down,
 * restarting) it keeps trying, with back-off, for `connectTimeoutMs` (default 10 s), then rejects
 * with code `closed`; a refused upgrade (a bad token, a wrong path) rejects at once with its code.
 * Later drops are reconnected by the client.
 * @param {string} url e.g. `ws://127.0.0.1:7350/v1`
 * @param {string} token
 * @param {import("./index.d.ts").ClientOptions} [options]
 */
export async function connect(url, token, options = {}) {
  const client = new WardenClient(url, token, options);
  try {
    await client.ready();
  } catch (e) {
    client.close(); // no retrying in the background for a caller that got an error
    throw e;
  }
  return client;
}

export class WardenClient {
  /**
   * @param {string} url
   * @param {string} token
   * @param {import("./index.d.ts").ClientOptions} [options]
   */
  constructor(url, token, options = {}) {
    this.url = url;
    this.token = token;
    this.requestTimeoutMs = options.requestTimeoutMs ?? 10_000;
    this.commandTimeoutMs = options.commandTimeoutMs ?? 30_000;
    this.reconnectMinMs = options.reconnectMinMs ?? 100;
    this.reconnectMaxMs = options.reconnectMaxMs ?? 5_000;
    this.connectTimeoutMs = options.connectTimeoutMs ?? 10_000;
    this._startedAt = Date.now();
    this.WebSocketImpl = options.WebSocket;
    /** The last `welcome` (player, role, limits). */
    this.welcome = null;
    /** Connections opened so far (1 after the first, 2 after one reconnect ...). */
    this.connections = 0;
    this._ws = null;
    this._nextReq = 1;
    /** @type {Map<number, any>} pending requests by req */
    this._pending = new Map();
    /** @type {Set<Subscription>} */
    this._subs = new Set();
    this._closed = false;
    this._listeners = { open: new Set(), close: new Set() };
    this._readyWaiters = [];
    this._firstError = null;
    this._open();
  }

  /** Resolves once connected (after `welcome`); rejects once connecting has failed for good. */
  ready() {
    if (this.welcome && this._ws && this._ws.readyState === 1) return Promise.resolve(this);
    if (this._firstError) return Promise.reject(this._firstError);
    return new Promise((resolve, reject) => this._readyWaiters.push({ resolve, reject }));
  }

  /** `open` (after each welcome) or `close` ({code, reason}) of the underlying connection. */
  on(event, fn) {
    this._listeners[event].add(fn);
    return () => this._listeners[event].delete(fn);
  }

  /** Whether a connection is open and welcomed. */
  get connected() {
    return !!(this._ws && this._ws.readyState === 1 && this._welcomed);
  }

  async _open() {
    if (this._closed) return;
    const WS = this.WebSocketImpl ?? (await defaultWebSocket());
    const sep = this.url.includes("?") ? "&" : "?";
    const ws = new WS(`${this.url}${sep}token=${encodeURIComponent(this.token)}`, ["warden.v1"]);
    ws.binaryType = "arraybuffer";
    this._ws = ws;
    this._welcomed = false;
    this._refusedWith = undefined;
    ws.onmessage = (ev) => this._onFrame(ws, ev.data);
    ws.onerror = (ev) => {
      // Under Node (ws) a refused upgrade names its HTTP status; a browser never says (1006).
      const status = /Unexpected server response: (\d+)/.exec(ev?.message ?? "")?.[1];
      if (status) this._refusedWith = Number(status);
    };
    ws.onclose = (ev) => this._onClose(ws, ev.code, ev.reason);
  }

  _onClose(ws, code, reason) {
    if (ws !== this._ws) return;
    const wasWelcomed = this._welcomed;
    this._ws = null;
    this._welcomed = false;
    for (const fn of this._listeners.close) fn({ code, reason });
    if (this.connections === 0 && !wasWelcomed) {
      // Not connected yet. A refused upgrade is final: tell whoever waits in `ready()` at once.
      // An unreachable server is tried again until `connectTimeoutMs` has passed (a browser
      // shows 1006 for both; see docs/protocol.md §1).
      const refused = { 401: ErrorCode.Unauthorized, 404: ErrorCode.NotFound, 400: ErrorCode.UnsupportedProtocol }[this._refusedWith];
      const gaveUp = Date.now() - this._startedAt >= this.connectTimeoutMs;
      if (refused || gaveUp) {
        const err = refused
          ? new WardenError(refused, `the server refused the connection (HTTP ${this._refusedWith})`)
          : new WardenError("closed", `no connection within ${this.connectTimeoutMs} ms (${code} ${reason ?? ""})`.trim());
        this._firstError = err;
        for (const w of this._readyWaiters.splice(0)) w.reject(err);
      }
    }
    if (this._closed) return;
    this._attempt = (this._attempt ?? 0) + 1;
    const base = Math.min(this.reconnectMaxMs, this.reconnectMinMs * 2 ** (this._attempt - 1));
    const delay = base / 2 + Math.random() * (base / 2);
    this._reconnectTimer = setTimeout(() => this._open(), delay);
  }

  _onFrame(ws, data) {
    let msg;
    try {
      msg = decodeMessage(new Uint8Array(data));
    } catch {
      return;
    }
    if (!msg || typeof msg !== "object") return;
    if (msg.type === "welcome") return this._onWelcome(ws, msg);
    if (msg.type === "update") {
      for (const sub of this._subs) sub._onUpdate(msg);
      return;
    }
    if (msg.req === undefined || msg.req === null) {
      if (msg.type === "error" && msg.code === ErrorCode.SubscriptionFailed) {
        for (const sub of this._subs) sub._resume();
      }
      return;
    }
    const p = this._pending.get(Number(msg.req));
    if (!p) return;
    this._pending.delete(Number(msg.req));
    clearTimeout(p.timer);
    p.settle(msg);
  }

  _onWelcome(ws, msg) {
    if (Number(msg.protocol) !== PROTOCOL_VERSION) {
      ws.close(1002, "unsupported protocol version");
      return;
    }
    this.welcome = msg;
    this._welcomed = true;
    this._attempt = 0;
    this.connections += 1;
    this._firstError = null;
    for (const w of this._readyWaiters.splice(0)) w.resolve(this);
    // Resend what had no reply (commands keep their command id), then resume subscriptions.
    for (const [req, p] of [...this._pending]) {
      this._pending.delete(req);
      clearTimeout(p.timer);
      p.resend();
    }
    for (const sub of this._subs) sub._resume();
    for (const fn of this._listeners.open) fn(msg);
  }

  /**
   * Sends one request and resolves with its reply (any `type` but `error`). The request is sent
   * again (new `req`, same content) after a reconnect or a per-attempt timeout, until
   * `deadlineMs`; retryable errors (`conflict`, `unavailable`, `shutting_down`, `rate_limited`, `storage_full`)
   * are retried too with back-off.
   */
  _request(body, { deadlineMs, retryErrors = false } = {}) {
    const deadline = Date.now() + (deadlineMs ?? this.requestTimeoutMs);
    const commandId = body.command_id;
    return new Promise((resolve, reject) => {
      if (this._closed) return reject(new WardenError("closed", "client closed"));
      let tries = 0;
      const attempt = () => {
        if (this._closed) return reject(new WardenError("closed", "client closed", { commandId }));
        const left = deadline - Date.now();
        if (left <= 0) {
          return reject(new TimeoutError(`no reply to ${body.type} in time`, { commandId }));
        }
        const req = this._nextReq++;
        const entry = {
          resend: attempt,
          settle: (msg) => {
            if (msg.type === "error") {
              if (retryErrors && RETRYABLE.has(msg.code) && Date.now() < deadline) {
                tries += 1;
                return void setTimeout(attempt, Math.min(1000, 20 * 2 ** tries));
              }
              return reject(new WardenError(msg.code, msg.message, { req, commandId }));
            }
            resolve(msg);
          },
          timer: setTimeout(() => {
            if (this._pending.delete(req)) attempt();
          }, Math.min(left, this.requestTimeoutMs)),
        };
        this._pending.set(req, entry);
        let frame;
        try {
          frame = encodeMessage({ ...body, req });
        } catch (e) {
          this._pending.delete(req);
          clearTimeout(entry.timer);
          return reject(e);
        }
        if (this.connected) {
          try {
            this._ws.send(frame);
          } catch {
            // Sent again on the next welcome.
          }
        }
      };
      attempt();
    });
  }

  /**
   * Sends a command with one command id for all its attempts (the given one, else a fresh one).
   * `existing` is always a boolean in what it resolves with (the server leaves it out when false).
   */
  async _command(body, commandId) {
    const applied = await this._request(
      { ...body, command_id: commandId ?? newCommandId() },
      { deadlineMs: this.commandTimeoutMs, retryErrors: true },
    );
    applied.existing = applied.existing === true;
    return applied;
  }

  /**
   * Creates a wallet of a catalogue type, named `name` (leave it out for a type an owner holds
   * once, e.g. `gold`; `wood:<label>` for one held many times); services may set `owner` and
   * `params`. Creating a wallet that exists resolves with it, `existing: true`.
   * @returns {Promise<import("./index.d.ts").Applied>}
   */
  create(resourceType, { owner, name, params, commandId } = {}) {
    const body = { type: "create", resource_type: resourceType };
    if (name !== undefined) body.name = name;
    if (owner !== undefined) body.owner = owner;
    if (params !== undefined) body.params = params;
    return this._command(body, commandId);
  }

  /**
   * A handle on `owner`'s wallet `name` (`gold`, `wood:camp-3`): every request it sends names
   * the wallet (`wallet: {owner, name}`), not its id.
   * @returns {Wallet}
   */
  wallet(owner, name) {
    return new Wallet(this, owner, name);
  }

  /** Spends `amount` from a resource (its id, or a wallet `{owner, name}`). */
  async allocate(resource, amount, { reason, commandId } = {}) {
    const body = { type: "allocate", ...target(resource), amount };
    if (reason !== undefined) body.reason = reason;
    return this._command(body, commandId);
  }

  /** Credits `amount` (never past max_amount). */
  async add(resource, amount, { reason, commandId } = {}) {
    const body = { type: "add", ...target(resource), amount };
    if (reason !== undefined) body.reason = reason;
    return this._command(body, commandId);
  }

  async lock(resource, reason, durationMs, { commandId } = {}) {
    return this._command(
      { type: "lock", ...target(resource), reason, duration_ms: durationMs },
      commandId,
    );
  }

  async unlock(resource, { commandId } = {}) {
    return this._command({ type: "unlock", ...target(resource) }, commandId);
  }

  /** @returns {Promise<import("./index.d.ts").Resource>} */
  async get(resource) {
    return (await this._request({ type: "get", ...target(resource) })).resource;
  }

  /** The resources of `owner` (default: the caller). */
  async list(owner) {
    const body = { type: "list" };
    if (owner !== undefined) body.owner = owner;
    return (await this._request(body)).resources;
  }

  /** One page of the audit trail, events after `afterVersion`; each names who issued it (`by`, `by_role`). */
  async history(resource, { afterVersion, limit } = {}) {
    const body = { type: "history", ...target(resource) };
    if (afterVersion !== undefined) body.after_version = afterVersion;
    if (limit !== undefined) body.limit = limit;
    return (await this._request(body)).events;
  }

  /** The whole audit trail, paging until the end. */
  async fullHistory(resource) {
    const all = [];
    for (;;) {
      const page = await this.history(resource, { afterVersion: all.at(-1)?.version ?? 0 });
      if (page.length === 0) return all;
      all.push(...page);
    }
  }

  /**
   * The resource as it was right after `version`, or at instant `at` (ms); for the owner and
   * services, also who issued that version (`by`, `by_role`).
   * @returns {Promise<import("./index.d.ts").State>}
   */
  async stateAt(resource, { version, at }) {
    const body = { type: "state_at", ...target(resource) };
    if (version !== undefined) body.version = version;
    if (at !== undefined) body.at = at;
    const reply = await this._request(body);
    const state = { version: reply.version, resource: reply.resource };
    if (reply.by !== undefined && reply.by !== null) state.by = reply.by;
    if (reply.by_role !== undefined && reply.by_role !== null) state.by_role = reply.by_role;
    return state;
  }

  /** Round trip; resolves with the server's time (ms). */
  async ping() {
    return (await this._request({ type: "ping" })).server_time;
  }

  /**
   * Follows one resource (`{resourceId, fromVersion?}` or `{wallet: {owner, name}, fromVersion?}`)
   * or all of an owner's (`{owner}`).
   * `onUpdate(resource, {baseVersion, version})` gets each version once, in order per resource,
   * across reconnects and 4008 closes.
   * @returns {Promise<Subscription>} once the first `subscribed` arrived
   */
  async subscribe(target, onUpdate) {
    const sub = new Subscription(this, target, onUpdate);
    this._subs.add(sub);
    try {
      await sub._start();
    } catch (e) {
      this._subs.delete(sub);
      throw e;
    }
    return sub;
  }

  /** Closes for good: pending requests fail with `closed`, no reconnect. */
  close() {
    this._closed = true;
    clearTimeout(this._reconnectTimer);
    for (const [, p] of this._pending) {
      clearTimeout(p.timer);
      p.settle({ type: "error", code: "closed", message: "client closed" });
    }
    this._pending.clear();
    if (this._ws) {
      try {
        this._ws.close(1000);
      } catch {
        // already closing
      }
    }
  }

  /** Drops the current connection as a network failure would (for tests and demos). */
  _dropConnection() {
    if (this._ws) {
      if (typeof this._ws.terminate === "function") this._ws.terminate();
      else this._ws.close(4000, "dropped by client");
    }
  }
}

/** A live subscription; `versions` maps each resource id to the last version delivered. */
export class Subscription {
  constructor(client, target, onUpdate) {
    this.client = client;
    this.resourceId = target.resourceId;
    this.owner = target.owner;
    /** The wallet followed (`{owner, name}`); its `resourceId` is learned from the server. */
    this.wallet = target.wallet === undefined ? undefined : walletOf(target.wallet);
    const given = [this.resourceId, this.wallet, this.owner].filter((x) => x !== undefined).length;
    if (given !== 1) {
      throw new WardenError(ErrorCode.BadMessage, "subscribe needs exactly one of resourceId, wallet and owner");
    }
    this.onUpdate = onUpdate;
    /** @type {Map<string, number>} */
    this.versions = new Map();
    if (this.resourceId !== undefined && target.fromVersion !== undefined) {
      this.versions.set(this.resourceId, target.fromVersion);
    }
    // A wallet's id is not known before the server names it: its start version is kept aside.
    this._fromVersion = this.wallet !== undefined ? target.fromVersion : undefined;
    /** Server-side subscription number on the current connection. */
    this.sub = null;
    this.closed = false;
  }

  _body() {
    if (this.owner !== undefined) return { type: "subscribe", owner: this.owner };
    let body;
    let last;
    if (this.wallet !== undefined) {
      body = { type: "subscribe", wallet: { ...this.wallet } };
      last = (this.resourceId !== undefined ? this.versions.get(this.resourceId) : undefined) ?? this._fromVersion;
    } else {
      body = { type: "subscribe", resource_id: this.resourceId };
      last = this.versions.get(this.resourceId);
    }
    if (last !== undefined) body.from_version = last;
    return body;
  }

  async _start() {
    this._asking = true;
    try {
      const reply = await this.client._request(this._body(), {
        deadlineMs: this.client.commandTimeoutMs,
      });
      this._onSubscribed(reply);
    } finally {
      this._asking = false;
    }
  }

  _onSubscribed(reply) {
    this.sub = reply.sub;
    for (const r of reply.resources ?? []) this._deliver(r, undefined, r.version);
  }

  /** Subscribes again on a new connection, from the last version delivered. */
  _resume() {
    // A subscribe still waiting for its reply is sent again by the client itself.
    if (this.closed || this._asking) return;
    this.sub = null;
    this._asking = true;
    this.client._request(this._body(), { deadlineMs: this.client.commandTimeoutMs }).then(
      (reply) => {
        this._asking = false;
        this._onSubscribed(reply);
      },
      () => {
        // Tried again at the next reconnect.
        this._asking = false;
      },
    );
  }

  _onUpdate(msg) {
    if (this.closed) return;
    // Each update names the subscription it belongs to; two subscriptions covering one resource
    // each get their own copy.
    if (msg.sub !== undefined && msg.sub !== null && this.sub !== null && Number(msg.sub) !== Number(this.sub)) {
      return;
    }
    const r = msg.resource;
    if (!this._covers(msg.resource_id, r)) return;
    this._deliver(r, msg.base_version, msg.version);
  }

  /** Whether resource `id` (view `r`) is one this subscription follows. */
  _covers(id, r) {
    if (this.resourceId !== undefined) return id === this.resourceId;
    if (this.wallet !== undefined) return r?.owner === this.wallet.owner && r?.name === this.wallet.name;
    return r?.owner === this.owner;
  }

  _deliver(resource, baseVersion, version) {
    // A wallet subscription learns its resource's id from the first view it gets.
    if (this.wallet !== undefined && this.resourceId === undefined) this.resourceId = resource.id;
    const last = this.versions.get(resource.id) ?? this._fromVersion ?? 0;
    if (Number(version) <= last) return; // a copy already delivered
    this.versions.set(resource.id, Number(version));
    this.onUpdate(resource, { baseVersion, version });
  }

  /** Ends the subscription; no update follows. */
  async close() {
    this.closed = true;
    this.client._subs.delete(this);
    if (this.sub !== null && this.client.connected) {
      try {
        await this.client._request({ type: "unsubscribe", sub: this.sub });
      } catch {
        // The server forgets it with the session anyway.
      }
    }
  }
}

/** `{owner, name}` checked and copied (sent as `wallet`). */
function walletOf(w) {
  if (!w || typeof w !== "object" || typeof w.owner !== "string" || typeof w.name !== "string" || !w.owner || !w.name) {
    throw new WardenError(ErrorCode.BadMessage, "a wallet is {owner, name}, two non-empty strings");
  }
  return { owner: w.owner, name: w.name };
}

/** The fields naming a resource in a request: `resource_id` for an id, `wallet` for `{owner, name}`. */
function target(resource) {
  if (typeof resource === "string") return { resource_id: resource };
  if (resource instanceof Wallet) return { wallet: { owner: resource.owner, name: resource.name } };
  return { wallet: walletOf(resource) };
}

/** `options` of a wallet's allocate and add: `{reason, commandId}`, or the reason alone. */
const withReason = (options) => (typeof options === "string" ? { reason: options } : options ?? {});

/**
 * `owner`'s wallet `name`, from `client.wallet(owner, name)`. Each method is the client's own
 * (same replies, same retries with one command id per command) with the wallet in place of the id.
 */
export class Wallet {
  constructor(client, owner, name) {
    const w = walletOf({ owner, name });
    this.client = client;
    this.owner = w.owner;
    this.name = w.name;
  }

  /** The resource type the name stands for: `gold` for `gold`, `wood` for `wood:camp-3`. */
  get resourceType() {
    const colon = this.name.indexOf(":");
    return colon < 0 ? this.name : this.name.slice(0, colon);
  }

  /** `{owner, name}`, as sent in `wallet`. */
  toJSON() {
    return { owner: this.owner, name: this.name };
  }

  /**
   * Creates this wallet (its type is the name's, before any `:`), or finds it: a wallet that
   * exists resolves with `existing: true`. Services may set `params` (and create another owner's).
   */
  create({ params, commandId } = {}) {
    const type = this.resourceType;
    return this.client.create(type, {
      owner: this.owner,
      name: this.name === type ? undefined : this.name,
      params,
      commandId,
    });
  }

  /** Spends `amount`; `options` is `{reason, commandId}` or the reason. */
  allocate(amount, options) {
    return this.client.allocate(this, amount, withReason(options));
  }

  /** Credits `amount` (never past max_amount); `options` is `{reason, commandId}` or the reason. */
  add(amount, options) {
    return this.client.add(this, amount, withReason(options));
  }

  lock(reason, durationMs, options) {
    return this.client.lock(this, reason, durationMs, options);
  }

  unlock(options) {
    return this.client.unlock(this, options);
  }

  get() {
    return this.client.get(this);
  }

  history(options) {
    return this.client.history(this, options);
  }

  fullHistory() {
    return this.client.fullHistory(this);
  }

  stateAt(point) {
    return this.client.stateAt(this, point);
  }

  /** Follows this wallet from `fromVersion` (default: its current view first); see `client.subscribe`. */
  subscribe(onUpdate, { fromVersion } = {}) {
    return this.client.subscribe({ wallet: this.toJSON(), fromVersion }, onUpdate);
  }
}
