// Types of the Warden JavaScript client (src/index.js). Field names are the protocol's
// (docs/protocol.md, version 1): snake_case as on the wire.

export const PROTOCOL_VERSION: 1;

/** Every error code of the protocol (docs/protocol.md §5), generated from the Rust enum. */
export const ErrorCode: Readonly<Record<string, string>>;
/** Every close code a session ends with (docs/protocol.md §7), generated from the Rust enum. */
export const CloseCode: Readonly<Record<string, number>>;

/** The client schema of a resource (owner view; the spectator view lacks the optional fields). */
export interface Resource {
  id: string;
  owner: string;
  resource_type: string;
  amount: number;
  amount_at: number;
  max_amount: number;
  regen_milli?: number;
  locked: boolean;
  lock_reason?: string;
  lock_expires_at?: number;
  version: number;
  updated_at: number;
}

/** The reply to a command. `duplicate` is true when this command id had already been applied. */
export interface Applied {
  type: "applied";
  req: number;
  command_id: string;
  resource_id: string;
  version: number;
  resource: Resource;
  duplicate: boolean;
}

export interface HistoryEvent {
  version: number;
  event_type: string;
  at: number;
  command_id: string;
  amount?: number;
  balance?: number;
  reason?: string;
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
export function connect(url: string, token: string, options?: ClientOptions): Promise<WardenClient>;

export class WardenClient {
  constructor(url: string, token: string, options?: ClientOptions);
  welcome: Welcome | null;
  connections: number;
  readonly connected: boolean;
  ready(): Promise<WardenClient>;
  on(event: "open", fn: (welcome: Welcome) => void): () => void;
  on(event: "close", fn: (e: { code: number; reason: string }) => void): () => void;
  create(
    resourceType: string,
    options?: CommandOptions & {
      owner?: string;
      params?: { initial_amount: number; max_amount: number; regen_milli?: number };
    },
  ): Promise<Applied>;
  allocate(resourceId: string, amount: number, options?: CommandOptions & { reason?: string }): Promise<Applied>;
  add(resourceId: string, amount: number, options?: CommandOptions & { reason?: string }): Promise<Applied>;
  lock(resourceId: string, reason: string, durationMs: number, options?: CommandOptions): Promise<Applied>;
  unlock(resourceId: string, options?: CommandOptions): Promise<Applied>;
  get(resourceId: string): Promise<Resource>;
  list(owner?: string): Promise<Resource[]>;
  history(resourceId: string, options?: { afterVersion?: number; limit?: number }): Promise<HistoryEvent[]>;
  fullHistory(resourceId: string): Promise<HistoryEvent[]>;
  stateAt(
    resourceId: string,
    point: { version: number; at?: undefined } | { at: number; version?: undefined },
  ): Promise<{ version: number; resource: Resource }>;
  ping(): Promise<number>;
  subscribe(
    target: { resourceId: string; fromVersion?: number } | { owner: string },
    onUpdate: (resource: Resource, info: { baseVersion?: number; version: number }) => void,
  ): Promise<Subscription>;
  close(): void;
}

export class Subscription {
  resourceId?: string;
  owner?: string;
  /** The last version delivered, per resource id. */
  versions: Map<string, number>;
  close(): Promise<void>;
}
