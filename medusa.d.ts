/// <reference types="node" />
import type { AcquireArgs, ExecuteArgs, ExecuteGrant, LockingOptions, ReleaseArgs } from './index'

/** The logger Medusa hands to provider loaders (its `Logger`, narrowed to what is used). */
export interface MedusaLoaderLogger {
  info(message: string): void
  warn(message: string): void
  error(message: string, ...rest: unknown[]): void
}

/** What Medusa passes to a provider loader. */
export interface ProviderLoaderContext {
  /** The provider's own awilix container. */
  container: { register(name: string, resolver: { resolve: (...args: any[]) => unknown }): unknown }
  logger?: MedusaLoaderLogger
  /** The provider's `options` from `medusa-config`. */
  options?: LockingOptions
  /** The locking module's options. */
  moduleOptions?: Record<string, unknown>
  [other: string]: unknown
}

/**
 * The Locking Module Provider registered by Medusa as `lp_<id>` (`id` from the
 * provider's config). Built by Medusa; its Redis connection is opened by the loader.
 */
export declare class FerrolockLockingProvider {
  /** The identifier of `@medusajs/locking-redis`, which this provider replaces. */
  static readonly identifier: 'locking-redis'
  /**
   * Medusa passes its container cradle (holding the service the loader
   * connected). Without it, the provider builds its own service from
   * `options` and connects on first use.
   */
  constructor(container?: Record<string, unknown>, options?: LockingOptions)
  execute<T>(
    keys: string | string[],
    job: (signal: AbortSignal, grant: ExecuteGrant) => Promise<T> | T,
    args?: ExecuteArgs,
    sharedContext?: unknown,
  ): Promise<T>
  acquire(keys: string | string[], args?: AcquireArgs, sharedContext?: unknown): Promise<void>
  release(keys: string | string[], args?: ReleaseArgs, sharedContext?: unknown): Promise<boolean>
  releaseAll(args?: ReleaseArgs, sharedContext?: unknown): Promise<void>
  /** Closes the Redis connection (idempotent); later lock calls reject with `CLOSED`. */
  shutdown(): Promise<void>
}

/**
 * Rejects with Medusa's message when `redisUrl` is missing, connects with the
 * provider's options (a Redis that cannot be reached fails the boot), logs
 * `Connection to Redis in "locking-redis" provider established` and hands the
 * service to the provider.
 */
export declare function ferrolockLoader(context: ProviderLoaderContext): Promise<void>

/** What Medusa's `ModuleProvider(Modules.LOCKING, { services, loaders })` returns. */
export interface FerrolockModuleProvider {
  module: 'locking'
  services: Array<typeof FerrolockLockingProvider>
  loaders: Array<typeof ferrolockLoader>
}

export declare const PROVIDER_IDENTIFIER: 'locking-redis'
/** `No "redisUrl" provided in "locking" module, "locking-redis" provider options. ...` */
export declare const MISSING_REDIS_URL_MESSAGE: string

/** `resolve: "ferrolock/medusa"` (or `"ferrolock"`) in the locking module's `providers`. */
declare const moduleProvider: FerrolockModuleProvider
export default moduleProvider
