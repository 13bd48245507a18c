'use strict'

// The Medusa Locking Module Provider. Medusa's `ModuleProvider(Modules.LOCKING,
// { services, loaders })` only returns `{ module, services, loaders }`, so that
// object is built here and `@medusajs/*` is never required at runtime.
//
// How Medusa 2.21.2 uses it (for each entry of the locking module's `providers`):
// 1. it runs `loaders` with `{ container, logger, options, moduleOptions }`,
//    `options` being this provider's own options and `container` a container
//    private to this provider;
// 2. it builds `new FerrolockLockingProvider(container.cradle, moduleOptions)`,
//    i.e. with the LOCKING MODULE's options, not the provider's. The loader
//    therefore builds the service from the provider's options and hands it over
//    through the container, so provider-level options take effect.

const { LockingModuleService } = require('./index.js')

const MODULE_NAME = 'locking'
/** The identifier of `@medusajs/locking-redis`, which this provider replaces. */
const PROVIDER_IDENTIFIER = 'locking-redis'
/** Where the loader leaves the connected service for the provider's constructor. */
const SERVICE_REGISTRATION_NAME = 'ferrolockLockingService'

// Medusa's exact wording (part of the compatibility contract).
const MISSING_REDIS_URL_MESSAGE =
  `No "redisUrl" provided in "${MODULE_NAME}" module, "${PROVIDER_IDENTIFIER}" provider options. ` +
  `It is required for the "${PROVIDER_IDENTIFIER}" Module provider.`
const CONNECTED_MESSAGE = `Connection to Redis in "${PROVIDER_IDENTIFIER}" provider established`

function assertRedisUrl(options) {
  if (!options?.redisUrl && !options?.clusterNodes) {
    const error = new Error(MISSING_REDIS_URL_MESSAGE)
    error.code = 'INVALID_ARGUMENT'
    error.type = 'invalid_argument'
    throw error
  }
}

/** `container[name]`, or undefined: an awilix cradle throws on unregistered names. */
function optionalDependency(container, name) {
  if (container == null) return undefined
  try {
    return container[name]
  } catch {
    return undefined
  }
}

class FerrolockLockingProvider {
  static identifier = PROVIDER_IDENTIFIER

  #service
  #shutdown

  /**
   * `container` is Medusa's cradle: the service comes from the loader. Without
   * the loader (built by hand, or by a module that skips provider loaders) the
   * provider builds its own from `options` and connects on first use.
   */
  constructor(container, options) {
    const service = optionalDependency(container, SERVICE_REGISTRATION_NAME)
    if (service) {
      this.#service = service
    } else {
      assertRedisUrl(options)
      this.#service = new LockingModuleService(options, { logger: optionalDependency(container, 'logger') })
    }
  }

  async execute(keys, job, args) {
    return this.#service.execute(keys, job, args)
  }

  async acquire(keys, args) {
    await this.#service.acquire(keys, args)
  }

  async release(keys, args) {
    return this.#service.release(keys, args)
  }

  async releaseAll(args) {
    await this.#service.releaseAll(args)
  }

  /**
   * Closes the Redis connection (idempotent); later lock calls reject with
   * `CLOSED`. Medusa 2.21.2 calls no shutdown hook on providers, but the
   * connection never keeps the event loop alive: a shut-down app still exits.
   */
  async shutdown() {
    this.#shutdown ??= this.#service.close()
    await this.#shutdown
  }
}

/**
 * Validates the provider's options, connects, and registers the service for
 * the provider's constructor. A Redis that cannot be reached fails the boot
 * (Medusa's own provider logs and boots with a lock that cannot work).
 */
async function ferrolockLoader({ container, logger, options }) {
  logger ??= console
  assertRedisUrl(options)
  let service
  try {
    service = await LockingModuleService.connect(options, { logger })
  } catch (error) {
    if (error?.code !== 'INVALID_ARGUMENT') {
      logger.error(`An error occurred while connecting to Redis in provider "${PROVIDER_IDENTIFIER}": ${error?.message ?? error}`)
    }
    throw error
  }
  logger.info(CONNECTED_MESSAGE)
  // What awilix's `asValue` returns; written out so awilix is not a dependency.
  container.register(SERVICE_REGISTRATION_NAME, { resolve: () => service })
}

/** What `ModuleProvider(Modules.LOCKING, { services, loaders })` would return. */
const moduleProvider = {
  module: MODULE_NAME,
  services: [FerrolockLockingProvider],
  loaders: [ferrolockLoader],
}

// `__esModule` so TypeScript's `import provider from "ferrolock/medusa"` gets `default`.
// Medusa takes `exports.default ?? exports`; `moduleProvider` must never get a
// `default` key itself (Medusa's resolveExports would unwrap it).
Object.defineProperty(exports, '__esModule', { value: true })
exports.default = moduleProvider
exports.FerrolockLockingProvider = FerrolockLockingProvider
exports.ferrolockLoader = ferrolockLoader
exports.PROVIDER_IDENTIFIER = PROVIDER_IDENTIFIER
exports.MISSING_REDIS_URL_MESSAGE = MISSING_REDIS_URL_MESSAGE
