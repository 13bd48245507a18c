/// <reference types="node" />

/** Stable `error.code` of every error ferrolock rejects with. */
export type LockErrorCode =
  | 'LOCK_CONFLICT'
  | 'LOCK_TIMEOUT'
  | 'LOCK_LOST'
  | 'INVALID_ARGUMENT'
  | 'REDIS_ERROR'
  | 'CLOSED'

/** Medusa's `MedusaError.Types` value carried by each error (`conflict` → HTTP 409 in Medusa). */
export type MedusaErrorType = 'conflict' | 'invalid_argument' | 'unexpected_state'

/** The `Error` every ferrolock rejection is (a job's own errors pass through untouched). */
export interface LockError extends Error {
  code: LockErrorCode
  type: MedusaErrorType
}

export declare const ERROR_CODES: Readonly<{ [K in LockErrorCode]: K }>

/** TLS settings, as ioredis takes them. */
export interface TlsOptions {
  /** PEM root certificate(s) to trust instead of the system store. */
  ca?: string | Buffer
  /** PEM client certificate (mutual TLS), with `key`. */
  cert?: string | Buffer
  key?: string | Buffer
  /** `false` disables certificate verification. Default `true`. */
  rejectUnauthorized?: boolean
}

/** The ioredis options ferrolock applies. Other keys are accepted and reported once as ignored. */
export interface RedisOptions {
  username?: string
  password?: string
  db?: number
  /** `true` or an object: connect with TLS (also for a `redis://` URL). */
  tls?: boolean | TlsOptions
  /** ms to establish a connection. Default 5000. */
  connectTimeout?: number
  /** ms to wait for any Redis reply. Default 5000. */
  commandTimeout?: number
  /**
   * Redis Cluster only: redirection/reconnection attempts of a command. Default 6.
   * A single server or Sentinel master is reconnected with one attempt per call,
   * bounded by `connectTimeout`. `null` keeps the default.
   */
  maxRetriesPerRequest?: number | null
  /** Accepted for config compatibility; commands are always bounded by `commandTimeout`. */
  enableOfflineQueue?: boolean
  /** TCP keep-alive initial delay in ms (`0`: off); capped at 32,767,000 (Linux's limit). */
  keepAlive?: number
  /** Connection name (`CLIENT SETNAME`), set when the connection opens. */
  connectionName?: string
  /** Sentinel nodes; with them the master named `name` is used (as in ioredis). */
  sentinels?: Array<{ host?: string; port?: number }>
  /** The Sentinel master name (ioredis's `name`); required with `sentinels`. */
  name?: string
  sentinelPassword?: string
  [ignored: string]: unknown
}

export interface LockingOptions {
  /** `redis://[[user]:password@]host[:port][/db]`, or `rediss://` for TLS. Required unless `clusterNodes`. */
  redisUrl?: string
  /** Redis Cluster seed node URLs; `redisUrl` may then be omitted. */
  clusterNodes?: string[]
  /** Replicas that must acknowledge each grant (Redis `WAIT`) before it counts. Default 0 (off). */
  waitForReplicas?: number | string
  /** ms to wait for those acknowledgements; fewer → the grant is given back, `REDIS_ERROR`. Default 1000. */
  waitForReplicasTimeout?: number | string
  redisOptions?: RedisOptions
  /** Prefix of every lock key. Default `"medusa_lock:"`. */
  namespace?: string
  /** Seconds `execute` (and `acquire` with `awaitQueue`) waits when no `timeout` is given. Default 5, min 1. */
  waitLockingTimeout?: number | string
  /** ms, first wait between attempts. Default 5. */
  defaultRetryInterval?: number | string
  /** ms, cap of the wait between attempts. Default 200. */
  maximumRetryInterval?: number | string
  /** Growth of the wait between attempts. Default 2. */
  backoffFactor?: number | string
}

/** A logger such as Medusa's, `console` or pino: each level is optional (`warn`/`info` stand in). */
export interface Logger {
  error?(message: string): void
  warn?(message: string): void
  info?(message: string): void
  debug?(message: string): void
}

export interface ServiceExtras {
  /**
   * Receives this service's events: failed renewals and lost leases as `warn`
   * (Medusa's own texts), and with `logLevel: "debug"` every acquire, wait,
   * renewal and release with keys, owner and durations. Never a password.
   * Also gets the one-time "ignored option" warning (default: `process.emitWarning`).
   */
  logger?: Logger | null
  /** The most verbose level passed to `logger`. Default `"info"`. */
  logLevel?: 'error' | 'warn' | 'info' | 'debug'
}

/**
 * The fencing token of each key of a grant, by key: larger than the token of
 * every earlier grant of that key, across processes (and after a Redis
 * restart, while the server clock does not go back). Pass it to the storage
 * you write to, and have it reject writes with a smaller token than it saw.
 */
export type FencingTokens = Record<string, number>

/** The second argument of an `execute` job; read it while the job runs (it is empty once the keys are released). */
export interface ExecuteGrant {
  /** The fresh owner id of this `execute` call (`execute:<uuid>`). */
  ownerId: string
  fencingTokens: FencingTokens
}

/** A held lock, as `listLocks` reports it. */
export interface LockInfo {
  /** The key as callers give it, without the namespace. */
  key: string
  /** The owner id; `null` for a lock taken without owner (stored as `*`). */
  ownerId: string | null
  /** Remaining time to live in ms; `null` when the lock does not expire. */
  ttlMs: number | null
  /** Callers queued for the key in ferrolock's wait queue. */
  waiters: number
}

export interface ListLocksArgs {
  /** Only this owner's locks (`"*"`: those taken without owner). */
  ownerId?: string
  /** Redis glob on the key, namespace excluded. Default `"*"`. */
  pattern?: string
  /** Most locks returned, 1–100,000. Default 1000. */
  limit?: number
}

/** Counts since the service was created. */
export interface LockStats {
  /** Successful acquisitions (`acquire` and `execute`), one per call. */
  acquired: number
  /** `acquire` calls rejected with `LOCK_CONFLICT`. */
  conflicts: number
  /** Waits that ended with `LOCK_TIMEOUT`. */
  timeouts: number
  /** `execute` leases lost while the job ran (`LOCK_LOST`). */
  lostLeases: number
  renewals: number
  /** Renewals that failed and were retried. */
  renewalFailures: number
  /**
   * Time that `execute` and `awaitQueue` acquisitions took to get their keys
   * (granted or timed out). Quantiles are within ~19 % of the true value.
   */
  waits: { count: number; totalMs: number; p50Ms: number; p99Ms: number; maxMs: number }
}

export interface AcquireArgs {
  /** Owner of the lock; the same owner re-enters its own locks. Default `"*"` (anonymous, never re-entered). */
  ownerId?: string
  /** Seconds until the lock expires (min 1). Without it (or `0`) the lock does not expire. */
  expire?: number
  /** Wait for keys held by others instead of rejecting with `LOCK_CONFLICT`. */
  awaitQueue?: boolean
  /** Seconds `awaitQueue` waits before rejecting with `LOCK_TIMEOUT`. Default `waitLockingTimeout`. */
  timeout?: number
  [medusaArgument: string]: unknown
}

export interface ReleaseArgs {
  /** Owner whose locks are released. Default `"*"`. */
  ownerId?: string
  [medusaArgument: string]: unknown
}

export interface ExecuteArgs {
  /** Seconds to wait for all keys (min 1). Default `waitLockingTimeout`. */
  timeout?: number
  /** Seconds of the lease, renewed every third of it while the job runs (min 1). Default 60. */
  expire?: number
  [medusaArgument: string]: unknown
}

export declare class LockingModuleService {
  /**
   * Validates `options` — throws an `INVALID_ARGUMENT` error synchronously, as
   * constructors do — and connects on first use. Prefer `LockingModuleService.connect`.
   */
  constructor(options: LockingOptions, extras?: ServiceExtras)
  /** Creates the service and resolves once Redis answers (rejects with `REDIS_ERROR` within `connectTimeout`). */
  static connect(options: LockingOptions, extras?: ServiceExtras): Promise<LockingModuleService>
  /** Option names accepted but not applied (also reported once on creation). */
  readonly ignoredOptions: string[]
  /**
   * Takes every key, or none of them, in one round trip. Rejects with
   * `Failed to acquire lock for key "<key>"` (`LOCK_CONFLICT`) when one is held
   * by another owner or is free but promised to an earlier waiter, unless
   * `awaitQueue` — then queues, is woken when its turn comes, and waits up to
   * `timeout` (`LOCK_TIMEOUT`).
   */
  acquire(keys: string | string[], args?: AcquireArgs, sharedContext?: unknown): Promise<FencingTokens>
  /** Deletes each key held by `ownerId` (`"*"` by default); `true` only if every key was released. */
  release(keys: string | string[], args?: ReleaseArgs, sharedContext?: unknown): Promise<boolean>
  /**
   * Releases every lock of this namespace held by `ownerId` (`"*"` by default). A named
   * owner's locks come from its index (cost bounded by what it holds); anonymous locks are
   * found by scanning the namespace.
   */
  releaseAll(args?: ReleaseArgs, sharedContext?: unknown): Promise<void>
  /**
   * The held locks of this namespace, with owner, remaining TTL and waiters.
   * With a named `ownerId` they come from that owner's index (cost bounded by
   * what it holds); otherwise the namespace is scanned (every master of a
   * cluster) until `limit` locks are found.
   */
  listLocks(args?: ListLocksArgs): Promise<LockInfo[]>
  /** Counters and wait-time distribution since the service was created. */
  stats(): LockStats
  /** `stats()` in the Prometheus text format, labelled `namespace="…"`. */
  metrics(): string
  /**
   * Waits for all `keys` under a fresh owner, runs `job(signal, grant)` while renewing
   * the lease, and releases the keys however the job ends. Resolves to the
   * job's value; rejects with the job's own error, with `Timed-out acquiring lock.`
   * (`LOCK_TIMEOUT`, nothing ran), or with `LOCK_LOST` if the lease was lost —
   * `signal` aborts with that error as its reason as soon as it is noticed.
   */
  execute<T>(
    keys: string | string[],
    job: (signal: AbortSignal, grant: ExecuteGrant) => Promise<T> | T,
    args?: ExecuteArgs,
    sharedContext?: unknown,
  ): Promise<T>
  /** Stops renewals (aborting running jobs' signals with `CLOSED`) and closes the connection. Later calls reject with `CLOSED`. */
  close(): Promise<void>
}

/** The Medusa ModuleProvider (`resolve: "ferrolock"`); see `ferrolock/medusa`. */
declare const medusaProvider: import('./medusa').FerrolockModuleProvider
export default medusaProvider
