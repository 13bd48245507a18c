'use strict'
// Child process for fuzz.test.js: the inputs that could take a process down
// (a native abort, a stack overflow, an endless walk of a cyclic object) are
// tried here, one case per process, so a crash or a hang fails that case
// instead of killing the test runner. It prints `{"start": name}`, then
// `{"case": name, "sync": bool, "code", "message", "ms", "maxBlockMs"}`,
// where `sync` means the call threw instead of returning a promise and
// maxBlockMs is the longest the event loop was blocked meanwhile.
//
// argv[2]: JSON { url, only: name } runs one case; { list: true } prints the case names.

const { performance } = require('node:perf_hooks')
const { LockingModuleService } = require('../..')

const cfg = JSON.parse(process.argv[2])
const print = (line) => process.stdout.write(`${JSON.stringify(line)}\n`)

/** Settles `make()` with a 10 s cap, measuring how long the event loop stalled meanwhile. */
async function attempt(name, make) {
  print({ start: name })
  let maxBlockMs = 0
  let last = performance.now()
  const ticker = setInterval(() => {
    const now = performance.now()
    maxBlockMs = Math.max(maxBlockMs, now - last - 5)
    last = now
  }, 5)
  const started = performance.now()
  let result
  try {
    const promise = make()
    const blockedMs = performance.now() - started
    maxBlockMs = Math.max(maxBlockMs, blockedMs)
    if (!(promise instanceof Promise)) {
      result = { sync: false, code: 'NOT_A_PROMISE', message: String(promise) }
    } else {
      const outcome = await Promise.race([
        promise.then(
          (value) => ({ code: 'RESOLVED', message: typeof value === 'object' ? `object with ${Object.keys(value ?? {}).length} keys` : String(value) }),
          (error) => ({ code: error?.code ?? 'NO_CODE', message: String(error?.message ?? error) }),
        ),
        // unref: this timer must not keep the process alive once the call settled.
        new Promise((resolve) => setTimeout(() => resolve({ code: 'PENDING', message: 'not settled after 10 s' }), 10_000).unref()),
      ])
      result = { sync: false, ...outcome }
    }
  } catch (error) {
    result = { sync: true, code: error?.code ?? 'NO_CODE', message: String(error?.message ?? error) }
  }
  clearInterval(ticker)
  print({ case: name, ...result, ms: Math.round(performance.now() - started), maxBlockMs: Math.round(maxBlockMs) })
}

/** An object whose every property is the object itself: a cycle, wide and deep. */
function cyclic(width) {
  const object = { ownerId: 'o' }
  for (let i = 0; i < width; i++) object[`p${i}`] = object
  return object
}

function deeplyNested(depth) {
  let object = { ownerId: 'o' }
  for (let i = 0; i < depth; i++) object = { ownerId: 'o', inner: object }
  return object
}

/** The cases, by name; `locks` is a connected service (unused when only listing). */
function cases(locks) {
  const hugeSparse = new Array(2 ** 32 - 1)
  const bigSparse = []
  bigSparse[100_000] = 'k'
  const distinct = (n) => Array.from({ length: n }, (_, i) => `k${i}`)
  const connected = (options) => LockingModuleService.connect(options).then((service) => service.close().then(() => 'connected'))
  return {
    'acquire(new Array(2**32-1))': () => locks.acquire(hugeSparse),
    'release(new Array(2**32-1))': () => locks.release(hugeSparse),
    'execute(new Array(2**32-1))': () => locks.execute(hugeSparse, () => 'ran'),
    'acquire(sparse array of length 100001)': () => locks.acquire(bigSparse),
    'acquire(100,000 distinct keys)': () => locks.acquire(distinct(100_000)),
    'execute(100,000 distinct keys)': () => locks.execute(distinct(100_000), () => 'ran'),
    'acquire(10,001 distinct keys)': () => locks.acquire(distinct(10_001)),
    'acquire(a 10 MB key)': () => locks.acquire('k'.repeat(10 * 1024 * 1024)),
    'acquire(10,000 x the same key)': () => locks.acquire(Array(10_000).fill('same'), { ownerId: 'dup' }),
    'release(10,000 x the same key)': () => locks.release(Array(10_000).fill('same'), { ownerId: 'dup' }),
    'acquire(10,000 distinct keys)': () => locks.acquire(distinct(10_000), { ownerId: 'many', expire: 30 }),
    'release(10,000 distinct keys)': () => locks.release(distinct(10_000), { ownerId: 'many' }),
    'execute(10,000 distinct keys)': () => locks.execute(distinct(10_000), () => 'ran'),
    'acquire args: a cyclic object with 50 self-references': () => locks.acquire('k', cyclic(50)),
    'acquire args: nested 100,000 deep': () => locks.acquire('k', deeplyNested(100_000)),
    'connect options: a cyclic object with 50 self-references': () => LockingModuleService.connect({ ...cyclic(50), redisUrl: cfg.url }),
    'connect: keepAlive 2**53': () => connected({ redisUrl: cfg.url, redisOptions: { keepAlive: 2 ** 53 } }),
    'connect: keepAlive 1e308': () => connected({ redisUrl: cfg.url, redisOptions: { keepAlive: 1e308 } }),
    'connect: connectTimeout 1e308, commandTimeout 2**53': () =>
      connected({ redisUrl: cfg.url, redisOptions: { connectTimeout: 1e308, commandTimeout: 2 ** 53 } }),
    'acquire expire 2**53': () =>
      locks.acquire('huge-expire', { ownerId: 'o', expire: 2 ** 53 }).then(() => locks.release('huge-expire', { ownerId: 'o' })),
    'execute timeout and expire 1e308': () => locks.execute('huge-timeout', () => 'ran', { timeout: 1e308, expire: 1e308 }),
  }
}

async function main() {
  if (cfg.list) {
    print({ names: Object.keys(cases(null)) })
    return
  }
  const locks = await LockingModuleService.connect({ redisUrl: cfg.url, namespace: 'fuzzchild:' })
  const make = cases(locks)[cfg.only]
  if (!make) throw new Error(`no case ${cfg.only}`)
  await attempt(cfg.only, make)
  await locks.close()
  print({ done: true })
}

main().catch((error) => {
  print({ error: String(error?.stack ?? error) })
  process.exitCode = 1
})
