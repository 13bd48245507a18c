'use strict'

// Input fuzzing at the JS surface: every method (acquire, release, releaseAll,
// execute, connect and the constructor's options) gets bad values — null,
// undefined, NaN, ±Infinity, -1, 2**53, BigInt, Symbol, functions, Buffers
// and typed arrays, lone surrogates, sparse and huge arrays, getters that
// throw, hostile Proxies — and must return a promise that rejects with
// INVALID_ARGUMENT naming the parameter: never a synchronous throw, never a
// crash, never a hang, and nothing sent to Redis. The inputs that could take
// a process down run in child processes (workers/fuzz-worker.js).

const { test, before, after } = require('node:test')
const assert = require('node:assert/strict')
const path = require('node:path')
const { execFile } = require('node:child_process')
const { LockingModuleService } = require('..')
const { startRedis } = require('./helpers/redis')

const FUZZ_WORKER = path.join(__dirname, 'workers', 'fuzz-worker.js')

let redis
let locks

before(async () => {
  redis = await startRedis()
  locks = await LockingModuleService.connect({ redisUrl: redis.url, namespace: 'fuzz:' })
})

after(async () => {
  await locks?.close()
  await redis?.stop()
})

/** Every command Redis ran so far, by name (the test's own INFO and CLIENT LIST left out). */
async function commandCounts() {
  const stats = await redis.cli('info', 'commandstats')
  const counts = {}
  for (const [, name, calls] of stats.matchAll(/cmdstat_([^:]+):calls=(\d+)/g)) {
    if (name !== 'info' && name !== 'client|list') counts[name] = Number(calls)
  }
  return counts
}

/** A getter that throws, on an object or an array element. */
function throwingGetter(target, property) {
  return Object.defineProperty(target, property, {
    enumerable: true,
    get() {
      throw new Error('getter boom')
    },
  })
}

/** Proxies whose traps throw or lie. */
function hostileProxies(target) {
  const boom = () => {
    throw new Error('trap boom')
  }
  return {
    'a Proxy whose get trap throws': new Proxy(target, { get: boom }),
    'a Proxy whose ownKeys trap throws': new Proxy(target, { ownKeys: boom }),
    'a Proxy whose getOwnPropertyDescriptor trap throws': new Proxy(target, { getOwnPropertyDescriptor: boom }),
    'a revoked Proxy': (() => {
      const { proxy, revoke } = Proxy.revocable(target, {})
      revoke()
      return proxy
    })(),
  }
}

/** Values that are never a valid key, nor a valid list of keys. */
function badKeys() {
  const sparse = ['a', , 'b'] // eslint-disable-line no-sparse-arrays
  const holes = new Array(3)
  return {
    undefined: undefined,
    null: null,
    NaN: NaN,
    Infinity: Infinity,
    '-Infinity': -Infinity,
    '-1': -1,
    0: 0,
    '2**53': 2 ** 53,
    true: true,
    '""': '',
    '[]': [],
    '[""]': [''],
    '[1]': [1],
    '[null]': [null],
    '["a", undefined]': ['a', undefined],
    '["a", ["b"]]': ['a', ['b']],
    'a sparse array': sparse,
    'new Array(3)': holes,
    'a Symbol': Symbol('key'),
    'a BigInt': 10n,
    'a function': () => 'k',
    '{}': {},
    '{ key: "a" }': { key: 'a' },
    'a Date': new Date(0),
    'a RegExp': /k/,
    'a Map': new Map([['k', 'v']]),
    'a Set': new Set(['k']),
    'a Promise': Promise.resolve('k'),
    'new String("k")': new String('k'), // eslint-disable-line no-new-wrappers
    'a Buffer': Buffer.from('k'),
    '[a Buffer]': [Buffer.from('k')],
    'a Uint8Array': new Uint8Array([107]),
    'an ArrayBuffer': new ArrayBuffer(1),
    'a DataView': new DataView(new ArrayBuffer(1)),
    'a lone high surrogate': '\uD800',
    'a lone low surrogate inside': 'a\uDC00b',
    '["ok", lone surrogate]': ['ok', 'x\uDBFF'],
    'a key of 1025 bytes': 'k'.repeat(1025),
    '["ok", a key of 1025 bytes]': ['ok', 'é'.repeat(513)],
    '10,001 keys': Array.from({ length: 10_001 }, (_, i) => `k${i}`),
    'an array element whose getter throws': throwingGetter(['a', 'b'], 1),
    ...hostileProxies(['a']),
  }
}

/** Bad values for a number of seconds (`expire`, `timeout`). */
const badSeconds = {
  NaN: NaN,
  Infinity: Infinity,
  '-Infinity': -Infinity,
  '-1': -1,
  '-0.001': -0.001,
  '"5"': '5',
  true: true,
  '{}': {},
  '[]': [],
  'a BigInt': 10n,
  'a Symbol': Symbol('s'),
  'a function': () => 5,
  'a lone surrogate': '\uD800',
}

/** Bad owner ids. */
const badOwners = {
  '""': '',
  1: 1,
  NaN: NaN,
  true: true,
  '{}': {},
  '["o"]': ['o'],
  'a Symbol': Symbol('o'),
  'a BigInt': 1n,
  'a function': () => 'o',
  'a Buffer': Buffer.from('o'),
  'a lone surrogate': 'o\uD800',
}

/** Values that are not an arguments object. */
const badArgObjects = {
  '"o"': 'o',
  1: 1,
  NaN: NaN,
  true: true,
  'a Symbol': Symbol('a'),
  'a BigInt': 1n,
  'a function': () => ({}),
  '[]': [],
  'a getter that throws': throwingGetter({}, 'ownerId'),
  ...hostileProxies({ ownerId: 'o' }),
}

/**
 * Calls `call()` and checks it returned a promise (no synchronous throw)
 * that rejects with INVALID_ARGUMENT and a message naming `parameter`.
 * Resolves to what is wrong (a string), or null; every case is tried even
 * after one failed, so a failing test lists all of them.
 */
async function problemWith(what, parameter, call) {
  let promise
  try {
    promise = call()
  } catch (error) {
    return `${what}: threw synchronously instead of rejecting: ${error?.code} ${error?.message}`
  }
  if (!(promise instanceof Promise)) return `${what}: returned ${typeof promise}, not a promise`
  let timer
  const outcome = await Promise.race([
    promise.then(
      (value) => ({ resolved: value }),
      (error) => ({ error }),
    ),
    new Promise((resolve) => (timer = setTimeout(() => resolve({ pending: true }), 5000))),
  ])
  clearTimeout(timer)
  if (outcome.pending) return `${what}: still pending after 5 s`
  if (!outcome.error) return `${what}: resolved with ${String(outcome.resolved)}`
  const { error } = outcome
  if (error?.code !== 'INVALID_ARGUMENT') return `${what}: ${error?.code} (${error?.constructor?.name}): ${error?.message}`
  if (error.type !== 'invalid_argument' || !(error instanceof Error)) return `${what}: not a coded Error`
  if (!parameter.test(error.message)) return `${what}: the message does not name ${parameter}: ${error.message}`
  return null
}

/** Collects problems of many calls; `assertNone()` fails with all of them. */
function checker() {
  const problems = []
  return {
    async expectInvalid(what, parameter, call) {
      const problem = await problemWith(what, parameter, call)
      if (problem) problems.push(problem)
    },
    assertNone() {
      assert.deepEqual(problems, [], `${problems.length} call(s) did not reject with INVALID_ARGUMENT naming the parameter`)
    },
  }
}

test('bad keys: acquire, release and execute reject with INVALID_ARGUMENT naming "keys", run no job and send nothing to Redis', async () => {
  const check = checker()
  const before = await commandCounts()
  let ran = 0
  const job = () => ran++
  for (const [name, keys] of Object.entries(badKeys())) {
    await check.expectInvalid(`acquire(${name})`, /keys/, () => locks.acquire(keys))
    await check.expectInvalid(`acquire(${name}, { ownerId, expire })`, /keys/, () => locks.acquire(keys, { ownerId: 'o', expire: 5 }))
    await check.expectInvalid(`release(${name})`, /keys/, () => locks.release(keys))
    await check.expectInvalid(`execute(${name})`, /keys/, () => locks.execute(keys, job))
  }
  assert.equal(ran, 0, 'no job ran')
  assert.deepEqual(await commandCounts(), before, 'nothing was sent to Redis')
  assert.equal(await redis.cli('dbsize'), '0')
  check.assertNone()
})

test('bad call arguments: ownerId, expire, timeout, awaitQueue, the args object and the job are named in the rejection', async () => {
  const check = checker()
  const before = await commandCounts()
  let ran = 0
  const job = () => ran++
  for (const [name, ownerId] of Object.entries(badOwners)) {
    await check.expectInvalid(`acquire ownerId ${name}`, /ownerId/, () => locks.acquire('k', { ownerId }))
    await check.expectInvalid(`release ownerId ${name}`, /ownerId/, () => locks.release('k', { ownerId }))
    await check.expectInvalid(`releaseAll ownerId ${name}`, /ownerId/, () => locks.releaseAll({ ownerId }))
  }
  for (const [name, value] of Object.entries(badSeconds)) {
    await check.expectInvalid(`acquire expire ${name}`, /expire/, () => locks.acquire('k', { expire: value }))
    await check.expectInvalid(`acquire timeout ${name}`, /timeout/, () => locks.acquire('k', { awaitQueue: true, timeout: value }))
    await check.expectInvalid(`execute expire ${name}`, /expire/, () => locks.execute('k', job, { expire: value }))
    await check.expectInvalid(`execute timeout ${name}`, /timeout/, () => locks.execute('k', job, { timeout: value }))
  }
  for (const [name, awaitQueue] of Object.entries({ 1: 1, '"yes"': 'yes', '{}': {}, NaN: NaN, 'a Symbol': Symbol('q') })) {
    await check.expectInvalid(`acquire awaitQueue ${name}`, /awaitQueue/, () => locks.acquire('k', { awaitQueue }))
  }
  for (const [name, args] of Object.entries(badArgObjects)) {
    await check.expectInvalid(`acquire args ${name}`, /args|ownerId/, () => locks.acquire('k', args))
    await check.expectInvalid(`release args ${name}`, /args|ownerId/, () => locks.release('k', args))
    await check.expectInvalid(`releaseAll args ${name}`, /args|ownerId/, () => locks.releaseAll(args))
    await check.expectInvalid(`execute args ${name}`, /args|ownerId|expire|timeout/, () => locks.execute('k', job, args))
  }
  for (const [name, notAJob] of Object.entries({ undefined, null: null, 1: 1, '"job"': 'job', '{}': {}, 'a Promise': Promise.resolve(1), 'a Symbol': Symbol('j') })) {
    await check.expectInvalid(`execute job ${name}`, /job/, () => locks.execute('k', notAJob))
  }
  assert.equal(ran, 0, 'no job ran')
  assert.deepEqual(await commandCounts(), before, 'nothing was sent to Redis')
  assert.equal(await redis.cli('dbsize'), '0')
  check.assertNone()
})

test('bad options: connect() rejects with INVALID_ARGUMENT naming the option, the constructor throws it; nothing connects', async () => {
  const check = checker()
  const url = redis.url
  const before = await commandCounts()
  const clients = await redis.cli('client', 'list')
  const cases = {
    undefined: [undefined, /options|redisUrl/],
    null: [null, /options|redisUrl/],
    1: [1, /options/],
    '"redis://…"': [url, /options/],
    '[]': [[], /options/],
    '{}': [{}, /redisUrl/],
    'a Symbol': [Symbol('o'), /options/],
    'a function': [() => ({ redisUrl: url }), /options/],
    'redisUrl 1': [{ redisUrl: 1 }, /redisUrl/],
    'redisUrl ""': [{ redisUrl: '' }, /redisUrl/],
    'redisUrl http://': [{ redisUrl: 'http://127.0.0.1' }, /redisUrl/],
    'redisUrl with a lone surrogate': [{ redisUrl: `${url}/\uD800` }, /redisUrl/],
    'redisUrl as a Buffer': [{ redisUrl: Buffer.from(url) }, /redisUrl/],
    'redisUrl getter that throws': [throwingGetter({}, 'redisUrl'), /redisUrl|options/],
    'redisOptions "x"': [{ redisUrl: url, redisOptions: 'x' }, /redisOptions/],
    'redisOptions []': [{ redisUrl: url, redisOptions: [] }, /redisOptions/],
    'connectTimeout -1': [{ redisUrl: url, redisOptions: { connectTimeout: -1 } }, /connectTimeout/],
    'connectTimeout NaN': [{ redisUrl: url, redisOptions: { connectTimeout: NaN } }, /connectTimeout/],
    'connectTimeout Infinity': [{ redisUrl: url, redisOptions: { connectTimeout: Infinity } }, /connectTimeout/],
    'commandTimeout "5"': [{ redisUrl: url, redisOptions: { commandTimeout: '5' } }, /commandTimeout/],
    'commandTimeout BigInt': [{ redisUrl: url, redisOptions: { commandTimeout: 5n } }, /commandTimeout/],
    'keepAlive -1': [{ redisUrl: url, redisOptions: { keepAlive: -1 } }, /keepAlive/],
    'keepAlive NaN': [{ redisUrl: url, redisOptions: { keepAlive: NaN } }, /keepAlive/],
    'db -1': [{ redisUrl: url, redisOptions: { db: -1 } }, /db/],
    'db 1.5': [{ redisUrl: url, redisOptions: { db: 1.5 } }, /db/],
    'password 1': [{ redisUrl: url, redisOptions: { password: 1 } }, /password/],
    'username {}': [{ redisUrl: url, redisOptions: { username: {} } }, /username/],
    'tls 1': [{ redisUrl: url, redisOptions: { tls: 1 } }, /tls/],
    'tls "yes"': [{ redisUrl: url, redisOptions: { tls: 'yes' } }, /tls/],
    'tls.ca 1': [{ redisUrl: url, redisOptions: { tls: { ca: 1 } } }, /tls/],
    'tls.rejectUnauthorized "no"': [{ redisUrl: url, redisOptions: { tls: { rejectUnauthorized: 'no' } } }, /rejectUnauthorized/],
    'tls.cert without key': [{ redisUrl: url, redisOptions: { tls: { cert: 'x' } } }, /tls/],
    'enableOfflineQueue 1': [{ redisUrl: url, redisOptions: { enableOfflineQueue: 1 } }, /enableOfflineQueue/],
    'maxRetriesPerRequest -1': [{ redisUrl: url, redisOptions: { maxRetriesPerRequest: -1 } }, /maxRetriesPerRequest/],
    'namespace 1': [{ redisUrl: url, namespace: 1 }, /namespace/],
    'namespace with a lone surrogate': [{ redisUrl: url, namespace: 'ns\uD800:' }, /namespace/],
    'waitLockingTimeout -1': [{ redisUrl: url, waitLockingTimeout: -1 }, /waitLockingTimeout/],
    'waitLockingTimeout NaN': [{ redisUrl: url, waitLockingTimeout: NaN }, /waitLockingTimeout/],
    'waitLockingTimeout "soon"': [{ redisUrl: url, waitLockingTimeout: 'soon' }, /waitLockingTimeout/],
    'waitLockingTimeout Infinity': [{ redisUrl: url, waitLockingTimeout: Infinity }, /waitLockingTimeout/],
    'defaultRetryInterval -1': [{ redisUrl: url, defaultRetryInterval: -1 }, /defaultRetryInterval/],
    'maximumRetryInterval {}': [{ redisUrl: url, maximumRetryInterval: {} }, /maximumRetryInterval/],
    'backoffFactor 0.5': [{ redisUrl: url, backoffFactor: 0.5 }, /backoffFactor/],
    'backoffFactor NaN': [{ redisUrl: url, backoffFactor: NaN }, /backoffFactor/],
    'waitForReplicas 1.5': [{ redisUrl: url, waitForReplicas: 1.5 }, /waitForReplicas/],
    'waitForReplicasTimeout -1': [{ redisUrl: url, waitForReplicas: 1, waitForReplicasTimeout: -1 }, /waitForReplicasTimeout/],
    'clusterNodes []': [{ clusterNodes: [] }, /clusterNodes/],
    'clusterNodes "x"': [{ clusterNodes: 'redis://x' }, /clusterNodes/],
    'clusterNodes [1]': [{ clusterNodes: [1] }, /clusterNodes/],
    'sentinels "x"': [{ redisUrl: url, redisOptions: { sentinels: 'x', name: 'm' } }, /sentinels/],
    'sentinels without name': [{ redisUrl: url, redisOptions: { sentinels: [{ host: 'h', port: 1 }] } }, /name/],
    'sentinels port "x"': [{ redisUrl: url, redisOptions: { sentinels: [{ port: 'x' }], name: 'm' } }, /sentinels|port/],
    ...Object.fromEntries(Object.entries(hostileProxies({ redisUrl: url })).map(([name, value]) => [name, [value, /options|redisUrl/]])),
  }
  for (const [name, [options, parameter]] of Object.entries(cases)) {
    await check.expectInvalid(`connect(${name})`, parameter, () => LockingModuleService.connect(options))
    // The constructor throws, as constructors do: the same error, synchronously.
    await check.expectInvalid(`new LockingModuleService(${name})`, parameter, () => {
      try {
        new LockingModuleService(options).close()
        return Promise.resolve('constructed')
      } catch (error) {
        return Promise.reject(error)
      }
    })
  }
  await check.expectInvalid('connect(logLevel "verbose")', /logLevel/, () => LockingModuleService.connect({ redisUrl: url }, { logLevel: 'verbose' }))
  assert.deepEqual(await commandCounts(), before, 'nothing was sent to Redis')
  assert.equal((await redis.cli('client', 'list')).split('\n').length, clients.split('\n').length, 'no connection was opened')
  check.assertNone()
})

test('null and undefined for optional arguments mean "not given" (extras = null included)', async () => {
  const service = await LockingModuleService.connect({ redisUrl: redis.url, namespace: 'fuzznull:' }, null)
  try {
    await service.acquire('k', null)
    assert.equal(await service.release('k', null), true)
    await service.acquire('k', { ownerId: null, expire: null, awaitQueue: null, timeout: undefined })
    assert.equal(await service.release('k', { ownerId: undefined }), true)
    await service.releaseAll(null)
    await service.releaseAll(undefined)
    assert.equal(await service.execute('k', () => 'ok', null), 'ok')
    assert.equal(await service.execute('k', () => 'ok', { timeout: null, expire: undefined }), 'ok')
    assert.deepEqual(await service.listLocks(null), [])
  } finally {
    await service.close()
  }
  const lazy = new LockingModuleService({ redisUrl: redis.url, namespace: 'fuzznull:', redisOptions: null, waitLockingTimeout: null }, null)
  await lazy.acquire('k2')
  assert.equal(await lazy.release('k2'), true)
  await lazy.close()
})

test('random garbage as keys (seeded): always INVALID_ARGUMENT naming "keys", nothing sent to Redis', async (t) => {
  const seed = Number(process.env.FUZZ_SEED ?? Date.now() % 1_000_000)
  t.diagnostic(`seed ${seed} (FUZZ_SEED=${seed} to replay)`)
  let state = seed
  const random = () => {
    // mulberry32
    state = (state + 0x6d2b79f5) | 0
    let x = Math.imul(state ^ (state >>> 15), 1 | state)
    x = (x + Math.imul(x ^ (x >>> 7), 61 | x)) ^ x
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296
  }
  const pick = (items) => items[Math.floor(random() * items.length)]
  const junk = Object.entries(badKeys())
    .filter(([name, v]) => !/Proxy/.test(name) && !Array.isArray(v) && typeof v !== 'string')
    .map(([, v]) => v)
  const validKey = () => pick(['a', 'key', '🔒', 'x'.repeat(1 + Math.floor(random() * 100)), 'a b', '\n'])
  /** A value that is never valid as keys: a bad scalar, or an array with at least one bad element. */
  const invalid = (depth = 0) => {
    const kind = random()
    if (kind < 0.4 || depth > 2) return pick([...junk, '', '\uD800', 'k'.repeat(1025)])
    const items = Array.from({ length: Math.floor(random() * 5) }, validKey)
    items.splice(Math.floor(random() * (items.length + 1)), 0, invalid(depth + 1))
    return items
  }
  const check = checker()
  const before = await commandCounts()
  for (let i = 0; i < 300; i++) {
    const keys = invalid()
    const method = pick(['acquire', 'release', 'execute'])
    const call = method === 'execute' ? () => locks.execute(keys, () => assert.fail('ran')) : () => locks[method](keys, { ownerId: 'o' })
    await check.expectInvalid(`#${i} ${method}`, /keys/, call)
  }
  assert.deepEqual(await commandCounts(), before, 'nothing was sent to Redis')
  check.assertNone()
})

test('inputs that could crash, hang or block the process (each in a child process)', { timeout: 600_000 }, async (t) => {
  const list = await runWorker({ list: true }, 10_000)
  const names = list.find((line) => line.names).names
  const failures = []
  for (const name of names) {
    const lines = await runWorker({ url: redis.url, only: name }, 15_000)
    const result = lines.find((line) => line.case === name)
    const report = (problem) => failures.push(`${name}: ${problem}`)
    if (!result) {
      const status = lines.status
      report(`no result (child ${status}${lines.stderr ? `, stderr: ${lines.stderr.slice(0, 300)}` : ''})`)
      continue
    }
    t.diagnostic(`${name}: ${result.code} in ${result.ms} ms, event loop blocked up to ${result.maxBlockMs} ms`)
    if (result.sync) report(`threw synchronously: ${result.code} ${result.message}`)
    const invalid = /Array\(2\*\*32-1\)|sparse|100,000 distinct|10,001|10 MB/.test(name)
    const mayBeEither = /cyclic|nested/.test(name)
    if (invalid || (mayBeEither && result.code !== 'RESOLVED')) {
      if (result.code !== 'INVALID_ARGUMENT') report(`${result.code}: ${result.message}`)
      else if (!/keys|args|options|ownerId/.test(result.message)) report(`the message names no parameter: ${result.message}`)
    } else if (result.code !== 'RESOLVED') {
      report(`should work: ${result.code}: ${result.message}`)
    }
    if (result.ms > 5000) report(`took ${result.ms} ms`)
    if (result.maxBlockMs > 1000) report(`blocked the event loop for ${result.maxBlockMs} ms`)
    if (lines.status !== 0) report(`child exited with ${lines.status}${lines.stderr ? `: ${lines.stderr.slice(0, 300)}` : ''}`)
  }
  assert.deepEqual(failures, [])
})

/** Runs the fuzz worker; resolves to its JSON lines, with `.status` and `.stderr` (killed after `ms`). */
function runWorker(cfg, ms) {
  return new Promise((resolve) => {
    execFile(process.execPath, [FUZZ_WORKER, JSON.stringify(cfg)], { timeout: ms, killSignal: 'SIGKILL', maxBuffer: 16 * 1024 * 1024 }, (error, stdout, stderr) => {
      const lines = stdout
        .split('\n')
        .filter(Boolean)
        .map((line) => JSON.parse(line))
      lines.status = error ? (error.killed ? `killed after ${ms} ms (hung)` : error.signal ?? error.code) : 0
      lines.stderr = stderr
      resolve(lines)
    })
  })
}
