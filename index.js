'use strict'

// The standalone entry: `LockingModuleService` over the native addon. The
// glue here is what must run on the JS thread: the job, its AbortSignal, and
// turning every failure into a rejection.

const { NativeLockService } = require('./binding.js')

const ERROR_CODES = Object.freeze({
  LOCK_CONFLICT: 'LOCK_CONFLICT',
  LOCK_TIMEOUT: 'LOCK_TIMEOUT',
  LOCK_LOST: 'LOCK_LOST',
  INVALID_ARGUMENT: 'INVALID_ARGUMENT',
  REDIS_ERROR: 'REDIS_ERROR',
  CLOSED: 'CLOSED',
})

function reportIgnoredOptions(names, logger) {
  if (names.length === 0) return
  const message = `ferrolock: ignoring unsupported option(s) ${names.map((name) => `"${name}"`).join(', ')}`
  if (logger && typeof logger.warn === 'function') {
    logger.warn(message)
  } else {
    process.emitWarning(message, { code: 'FERROLOCK_IGNORED_OPTION' })
  }
}

class LockingModuleService {
  #native

  /**
   * Validates `options` (throws an `INVALID_ARGUMENT` error synchronously, as
   * constructors do) and connects on first use. Prefer `LockingModuleService.connect`.
   */
  constructor(options, extras) {
    this.#native = new NativeLockService(options)
    reportIgnoredOptions(this.#native.ignoredOptions, extras?.logger)
  }

  /** Creates the service and waits until Redis answers. */
  static async connect(options, extras) {
    const service = new LockingModuleService(options, extras)
    await service.#native.connect()
    return service
  }

  /** Option names that were accepted but have no effect. */
  get ignoredOptions() {
    return this.#native.ignoredOptions
  }

  async acquire(keys, args) {
    await this.#native.acquire(keys, args)
  }

  async release(keys, args) {
    return this.#native.release(keys, args)
  }

  async releaseAll(args) {
    await this.#native.releaseAll(args)
  }

  async execute(keys, job, args) {
    const controller = new AbortController()
    const lease = await this.#native.beginExecute(keys, job, args, (reason) => controller.abort(reason))
    let result
    let jobFailed = false
    let jobError
    try {
      result = await job(controller.signal)
    } catch (error) {
      jobFailed = true
      jobError = error
    }
    try {
      await lease.finish()
    } catch (leaseError) {
      // The job's own error wins; otherwise a lost lease or failed release is the outcome.
      if (!jobFailed) throw leaseError
    }
    if (jobFailed) throw jobError
    return result
  }

  async close() {
    this.#native.close()
  }
}

module.exports = { LockingModuleService, ERROR_CODES }

// `import ferrolock from "ferrolock"` (TypeScript/ESM interop) gets the provider below.
Object.defineProperty(module.exports, '__esModule', { value: true })

// The Medusa ModuleProvider is the default export (`resolve: "ferrolock"`),
// loaded lazily so the standalone entry never pulls it in.
Object.defineProperty(module.exports, 'default', {
  enumerable: true,
  get: () => require('./medusa.js').default,
})
