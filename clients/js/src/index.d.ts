// Types of the Warden JavaScript client (src/index.js). Field names are the protocol's
// (docs/protocol.md, version 1): snake_case as on the wire.

export const PROTOCOL_VERSION: 1;

/** Every error code of the protocol (docs/protocol.md §5), generated from the Rust enum. */
export const ErrorCode: Readonly<Record<string, string>>;
/** A client message as the wire carries it (integers above 2^53 must be `bigint`s). */
export function encodeMessage(body: object): Uint8Array;
/** A server message: integers as numbers where exact, `bigint` above 2^53. */
export function decodeMessage(bytes: Uint8Array): any;
/** Every close code a session ends with (docs/protocol.md §7), generated from the Rust enum. */
export const CloseCode: Readonly<Record<string, number>>;

/** The client schema of a resource (owner view; the spectator view lacks the optional fields). */
export interface Resource {
  id: string;
  owner: string;
  resource_type: string;
  /**
   * The wallet's name, unique per owner: the type for a type held once (`gold`), `<type>:<label>`
   * for one held many times (`wood:camp-3`). Absent for a resource created before wallets had names.
   */
  name?: string;
  /** A `bigint` above 2^53 (where a number is not exact), a number otherwise. */
  amount: number | bigint;
  amount_at: number;
  max_amount: number | bigint;
  regen_milli?: number;
  locked: boolean;
  lock_reason?: string;
  lock_expires_at?: number;
  version: number;
  updated_at: number;
}

/** The protocol's name for a resource view (`ClientResource` in docs/protocol.md). */
export type ClientResource = Resource;

/** A wallet named by its owner and name, sent as `wallet` in place of `resource_id`. */
export interface WalletRef {
  owner: string;
  /** `gold`, `mana` (types held once per owner), `wood:camp-3` (types held many times). */
  name: string;
}

/** What names a resource in a request: its id, or a wallet (`{owner, name}` or a `Wallet`). */
export type ResourceRef = string | WalletRef | Wallet;

/** The reply to a command. `duplicate` is true when this command id had already been applied. */
export interface Applied {
  type: "applied";
  req: number;
  command_id: string;
  resource_id: string;
  version: number;
  resource: Resource;
  duplicate: boolean;
  /**
   * True when a `create` found the wallet it names already there: nothing was recorded and
   * `resource` is that wallet as it is (the server leaves the field out when false; the client
   * always sets it).
   */
  existing: boolean;
}

/** Who issued an event: a player, a service, the server itself (a lock expiry), or `unknown` (recorded before roles were). */
export type IssuerRole = "player" | "service" | "server" | "unknown";

/** The reply to `stateAt`: the resource right after event `version`. */
export interface State {
  version: number;
  resource: Resource;
  /** Who issued event `version` (given to the owner and services only). */
  by?: string;
  by_role?: IssuerRole;
}

export interface HistoryEvent {
  version: number;
  event_type: string;
  at: number;
  command_id: string;
  amount?: number | bigint;
  balance?: number | bigint;
  reason?: string;
  /** Who issued it: a player's or service's id, or `server` for a lock expiry (absent from servers older than named wallets). */
  by?: string;
  by_role?: IssuerRole;
}

export interface Welcome {
  type: "welcome";
  protocol: number;
  player: string;
  role: "player" | "spectator" | "service";
  server_time: number;
  limits: Record<string, number>;
}

export interface ClientOptions {
  /** Per attempt of a query (default 10 000 ms); the query is sent again after it, once. */
  requestTimeoutMs?: number;
  /** How long a command keeps being retried with its command id (default 30 000 ms). */
  commandTimeoutMs?: number;
  /** First reconnect delay (default 100 ms), doubled up to `reconnectMaxMs` (default 5 000). */
  reconnectMinMs?: number;
  reconnectMaxMs?: number;
  /** How long `connect()` keeps trying an unreachable server (default 10 000 ms). */
  connectTimeoutMs?: number;
  /** A WebSocket class (default: the global one, else the `ws` package). */
  WebSocket?: unknown;
}

export interface CommandOptions {
  /** Reuse a command id to retry a command whose outcome is unknown. */
  commandId?: string;
}

export class WardenError extends Error {
  /** A code of docs/protocol.md §5 (or §1 for a refused connection: `unauthorized` …), or `timeout`, `closed`. */
  code: string;
  req?: number;
  commandId?: string;
}
export class TimeoutError extends WardenError {}

export function newCommandId(): string;

/** `options` of `allocate`/`add`: `{reason, commandId}`. */
export type AmountOptions = CommandOptions & { reason?: string };
export function connect(url: string, token: string, options?: ClientOptions): Promise<WardenClient>;

export class WardenClient {
  constructor(url: string, token: string, options?: ClientOptions);
  welcome: Welcome | null;
  connections: number;
  readonly connected: boolean;
  ready(): Promise<WardenClient>;
  on(event: "open", fn: (welcome: Welcome) => void): () => void;
  on(event: "close", fn: (e: { code: number; reason: string }) => void): () => void;
  /**
   * Creates a wallet of `resourceType`; `name` is left out for a type held once per owner (`gold`)
   * and `<type>:<label>` for one held many times (`wood:camp-3`). A wallet that exists resolves
   * with `existing: true`.
   */
  create(
    resourceType: string,
    options?: CommandOptions & {
      name?: string;
      owner?: string;
      params?: CreateParams;
    },
  ): Promise<Applied>;
  /** A handle on `owner`'s wallet `name`: its requests name the wallet, not its id. */
  wallet(owner: string, name: string): Wallet;
  /** `amount` above 2^53 must be a `bigint`. */
  allocate(resource: ResourceRef, amount: number | bigint, options?: AmountOptions): Promise<Applied>;
  add(resource: ResourceRef, amount: number | bigint, options?: AmountOptions): Promise<Applied>;
  lock(resource: ResourceRef, reason: string, durationMs: number, options?: CommandOptions): Promise<Applied>;
  unlock(resource: ResourceRef, options?: CommandOptions): Promise<Applied>;
  get(resource: ResourceRef): Promise<Resource>;
  list(owner?: string): Promise<Resource[]>;
  history(resource: ResourceRef, options?: HistoryOptions): Promise<HistoryEvent[]>;
  fullHistory(resource: ResourceRef): Promise<HistoryEvent[]>;
  stateAt(resource: ResourceRef, point: StatePoint): Promise<State>;
  ping(): Promise<number>;
  subscribe(
    target:
      | { resourceId: string; fromVersion?: number }
      | { wallet: WalletRef; fromVersion?: number }
      | { owner: string },
    onUpdate: OnUpdate,
  ): Promise<Subscription>;
  close(): void;
}

export interface CreateParams {
  initial_amount: number | bigint;
  max_amount: number | bigint;
  regen_milli?: number;
}
export interface HistoryOptions {
  afterVersion?: number;
  limit?: number;
}
export type StatePoint = { version: number; at?: undefined } | { at: number; version?: undefined };
export type OnUpdate = (resource: Resource, info: { baseVersion?: number; version: number }) => void;

/**
 * `owner`'s wallet `name` (from `client.wallet(owner, name)`). Its methods are the client's, with
 * the wallet in place of a resource id: same replies, same retries (one command id per command).
 */
export class Wallet implements WalletRef {
  readonly client: WardenClient;
  readonly owner: string;
  readonly name: string;
  /** The type the name stands for: the part before any `:` (`wood` for `wood:camp-3`). */
  readonly resourceType: string;
  toJSON(): WalletRef;
  /** Creates this wallet, or finds it (`existing: true`); services may set `params`. */
  create(options?: CommandOptions & { params?: CreateParams }): Promise<Applied>;
  /** `options`: `{reason, commandId}`, or the reason alone. */
  allocate(amount: number | bigint, options?: string | AmountOptions): Promise<Applied>;
  add(amount: number | bigint, options?: string | AmountOptions): Promise<Applied>;
  lock(reason: string, durationMs: number, options?: CommandOptions): Promise<Applied>;
  unlock(options?: CommandOptions): Promise<Applied>;
  get(): Promise<Resource>;
  history(options?: HistoryOptions): Promise<HistoryEvent[]>;
  fullHistory(): Promise<HistoryEvent[]>;
  stateAt(point: StatePoint): Promise<State>;
  subscribe(onUpdate: OnUpdate, options?: { fromVersion?: number }): Promise<Subscription>;
}

export class Subscription {
  /** For a wallet subscription, known once the server has named the wallet's resource. */
  resourceId?: string;
  wallet?: WalletRef;
  owner?: string;
  /** The last version delivered, per resource id. */
  versions: Map<string, number>;
  close(): Promise<void>;
}
