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

/** `logger[level](message)`, falling back to `info`/`warn` for loggers without that level. */
function logSink(logger) {
  if (logger === null || typeof logger !== 'object') return undefined
  return (level, message) => {
    const write = logger[level] ?? (level === 'error' ? logger.warn : logger.info) ?? logger.warn
    if (typeof write === 'function') write.call(logger, message)
  }
}

/** Prometheus text exposition of `stats()`. */
function prometheusText(stats, namespace) {
  const label = `{namespace="${namespace.replace(/["\\\n]/g, (c) => (c === '\n' ? '\\n' : `\\${c}`))}"}`
  const counters = [
    ['ferrolock_acquired_total', 'Locks acquired (every key of a call counts once per call).', stats.acquired],
    ['ferrolock_conflicts_total', 'Acquisitions rejected with LOCK_CONFLICT.', stats.conflicts],
    ['ferrolock_timeouts_total', 'Acquisitions that timed out waiting (LOCK_TIMEOUT).', stats.timeouts],
    ['ferrolock_lost_leases_total', 'execute leases lost while the job ran (LOCK_LOST).', stats.lostLeases],
    ['ferrolock_renewals_total', 'Lease renewals that succeeded.', stats.renewals],
    ['ferrolock_renewal_failures_total', 'Lease renewals that failed and were retried.', stats.renewalFailures],
  ]
  const lines = []
  for (const [name, help, value] of counters) {
    lines.push(`# HELP ${name} ${help}`, `# TYPE ${name} counter`, `${name}${label} ${value}`)
  }
  const wait = 'ferrolock_wait_seconds'
  const quantile = (q) => label.replace('}', `,quantile="${q}"}`)
  lines.push(
    `# HELP ${wait} Time execute and awaitQueue acquisitions waited for their keys.`,
    `# TYPE ${wait} summary`,
    `${wait}${quantile('0.5')} ${stats.waits.p50Ms / 1000}`,
    `${wait}${quantile('0.99')} ${stats.waits.p99Ms / 1000}`,
    `${wait}_sum${label} ${stats.waits.totalMs / 1000}`,
    `${wait}_count${label} ${stats.waits.count}`,
  )
  return lines.join('\n') + '\n'
}

// Native calls settle through one batch callback per service instead of a
// promise each (see src/node_calls.rs): `calls` holds the promise of each id.
const calls = new Map()
let lastCallId = 0

function nextCallId() {
  lastCallId = lastCallId >= 0xffffffff ? 1 : lastCallId + 1
  return lastCallId
}

/** `[id, error | null, value, …]` from the native side. */
function settleBatch(batch) {
  for (let i = 0; i < batch.length; i += 3) {
    const call = calls.get(batch[i])
    if (call === undefined) continue
    calls.delete(batch[i])
    if (batch[i + 1] !== null) call.reject(batch[i + 1])
    else call.resolve(batch[i + 2])
  }
}

/** Calls `target[method](id, ...args)` and resolves with what settles `id`. */
function nativeCall(target, method, ...args) {
  return new Promise((resolve, reject) => {
    const id = nextCallId()
    calls.set(id, { resolve, reject })
    try {
      target[method](id, ...args)
    } catch (error) {
      calls.delete(id)
      reject(error)
    }
  })
}

/** The job's second argument, read from the lease only if the job looks at it. */
function executeGrant(lease) {
  let ownerId
  let fencingTokens
  return {
    get ownerId() {
      ownerId ??= lease.ownerId
      return ownerId
    },
    get fencingTokens() {
      fencingTokens ??= lease.fencingTokens
      return fencingTokens
    },
  }
}

class LockingModuleService {
  #native

  /**
   * Validates `options` (throws an `INVALID_ARGUMENT` error synchronously, as
   * constructors do) and connects on first use. Prefer `LockingModuleService.connect`.
   */
  constructor(options, extras) {
    const logger = extras?.logger
    this.#native = new NativeLockService(options, settleBatch, logSink(logger), extras?.logLevel)
    reportIgnoredOptions(this.#native.ignoredOptions, logger)
  }

  /** Creates the service and waits until Redis answers. */
  static async connect(options, extras) {
    const service = new LockingModuleService(options, extras)
    await nativeCall(service.#native, 'connect')
    return service
  }

  /** Option names that were accepted but have no effect. */
  get ignoredOptions() {
    return this.#native.ignoredOptions
  }

  acquire(keys, args) {
    return nativeCall(this.#native, 'acquire', keys, args)
  }

  release(keys, args) {
    return nativeCall(this.#native, 'release', keys, args)
  }

  async releaseAll(args) {
    await nativeCall(this.#native, 'releaseAll', args)
  }

  listLocks(args) {
    return nativeCall(this.#native, 'listLocks', args)
  }

  stats() {
    const native = this.#native.stats()
    return {
      acquired: native.acquired,
      conflicts: native.conflicts,
      timeouts: native.timeouts,
      lostLeases: native.lostLeases,
      renewals: native.renewals,
      renewalFailures: native.renewalFailures,
      waits: {
        count: native.waits,
        totalMs: native.waitTotalMs,
        p50Ms: native.waitP50Ms,
        p99Ms: native.waitP99Ms,
        maxMs: native.waitMaxMs,
      },
    }
  }

  /** `stats()` as Prometheus text, labelled with the namespace. */
  metrics() {
    return prometheusText(this.stats(), this.#native.namespace)
  }

  async execute(keys, job, args) {
    const controller = new AbortController()
    const endId = nextCallId()
    calls.set(endId, { resolve() {}, reject: (reason) => controller.abort(reason) })
    let lease
    try {
      lease = await nativeCall(this.#native, 'beginExecute', endId, keys, job, args)
    } catch (error) {
      calls.delete(endId)
      throw error
    }
    const grant = executeGrant(lease)
    let result
    let jobFailed = false
    let jobError
    try {
      result = await job(controller.signal, grant)
    } catch (error) {
      jobFailed = true
      jobError = error
    }
    try {
      await nativeCall(lease, 'finish')
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
