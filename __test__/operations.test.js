'use strict'
// Operations: fencing tokens across processes and restarts, listing held
// locks, stats()/metrics(), and the service's events reaching its logger.

const { test, before, after } = require('node:test')
const assert = require('node:assert/strict')
const path = require('node:path')
const Redis = require('ioredis')
const { startRedis } = require('./helpers/redis')
const { runWorkers } = require('../scripts/workers')
const { LockingModuleService } = require('..')

const WORKER = path.join(__dirname, 'workers', 'hot-key-worker.js')
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

let server
let raw
before(async () => {
  server = await startRedis()
  raw = new Redis(server.url)
})
after(async () => {
  raw?.disconnect()
  await server?.stop()
})

function strictlyIncreasing(tokens) {
  for (let i = 1; i < tokens.length; i++) {
    if (!(tokens[i] > tokens[i - 1])) return `token #${i} (${tokens[i]}) is not above #${i - 1} (${tokens[i - 1]})`
  }
  return null
}

test('fencing tokens grow with every grant of a key across 4 processes', { timeout: 120_000 }, async () => {
  const { reports } = await runWorkers(
    WORKER,
    Array.from({ length: 4 }, () => ({
      url: server.url,
      keys: ['fenced'],
      callers: 3,
      iterations: 40,
      maxJobMs: 2,
      logKey: 'fence:log',
      tokenKey: 'fence:tokens',
      timeout: 60,
    })),
  )
  for (const report of reports) assert.deepEqual(report.errors, [])
  // Jobs push while holding the key, so the list is in grant order.
  const tokens = (await raw.lrange('fence:tokens', 0, -1)).map(Number)
  assert.equal(tokens.length, 4 * 3 * 40)
  assert.ok(tokens.every(Number.isSafeInteger))
  assert.equal(strictlyIncreasing(tokens), null)
})

test('fencing tokens: acquire resolves to them, re-entry and other keys move them up', async () => {
  const locks = await LockingModuleService.connect({ redisUrl: server.url, namespace: 'fence1:' })
  try {
    const first = await locks.acquire(['a', 'b'], { ownerId: 'o', expire: 30 })
    assert.deepEqual(Object.keys(first), ['a', 'b'])
    const again = await locks.acquire('a', { ownerId: 'o', expire: 30 })
    assert.ok(again.a > first.a)
    await locks.release(['a', 'b'], { ownerId: 'o' })
    const other = await locks.acquire('a', { ownerId: 'p' })
    assert.ok(other.a > again.a)
    const seen = []
    await locks.execute(['b', 'c'], async (signal, grant) => {
      assert.ok(signal instanceof AbortSignal)
      assert.match(grant.ownerId, /^execute:/)
      seen.push(grant.fencingTokens)
    })
    assert.ok(seen[0].b > other.a && seen[0].c > other.a)
  } finally {
    await locks.close()
  }
})

test('fencing tokens stay above earlier ones after Redis restarts empty', async () => {
  const own = await startRedis()
  try {
    const locks = await LockingModuleService.connect({ redisUrl: own.url })
    const before = await locks.acquire('k', { ownerId: 'o' })
    await own.restart() // kill -9 without persistence: the counter is gone
    let after
    for (let attempt = 0; after === undefined; attempt++) {
      try {
        after = await locks.acquire('k', { ownerId: 'o' })
      } catch (error) {
        if (attempt > 50) throw error
        await sleep(100)
      }
    }
    assert.equal(await own.cli('get', 'ferrolock:f:medusa_lock:'), String(after.k))
    assert.ok(after.k > before.k, `${after.k} > ${before.k}`)
    await locks.close()
  } finally {
    await own.stop()
  }
})

test('listLocks shows owner, TTL and waiters; filters by owner and pattern; stays in the namespace', async () => {
  const namespace = 'shop[1]*:'
  const locks = await LockingModuleService.connect({ redisUrl: server.url, namespace })
  const other = await LockingModuleService.connect({ redisUrl: server.url, namespace: 'shop1x:' })
  try {
    await other.acquire('cart_1', { ownerId: 'outsider' })
    await locks.acquire(['cart_1', 'cart_2'], { ownerId: 'alice', expire: 60 })
    await locks.acquire('stock_9')
    const waiting = locks.execute('cart_1', async () => 'done', { timeout: 10 })
    await sleep(200)

    const all = await locks.listLocks()
    all.sort((a, b) => a.key.localeCompare(b.key))
    assert.deepEqual(
      all.map(({ key, ownerId, waiters }) => ({ key, ownerId, waiters })),
      [
        { key: 'cart_1', ownerId: 'alice', waiters: 1 },
        { key: 'cart_2', ownerId: 'alice', waiters: 0 },
        { key: 'stock_9', ownerId: null, waiters: 0 },
      ],
    )
    const cart = all.find((lock) => lock.key === 'cart_1')
    assert.ok(cart.ttlMs > 55_000 && cart.ttlMs <= 60_000, String(cart.ttlMs))
    assert.equal(all.find((lock) => lock.key === 'stock_9').ttlMs, null)

    assert.deepEqual((await locks.listLocks({ ownerId: 'alice', pattern: 'cart_2' })).map((l) => l.key), ['cart_2'])
    assert.deepEqual((await locks.listLocks({ ownerId: '*' })).map((l) => l.key), ['stock_9'])
    assert.deepEqual((await locks.listLocks({ pattern: 'stock_*' })).map((l) => l.key), ['stock_9'])
    assert.equal((await locks.listLocks({ limit: 1 })).length, 1)
    assert.deepEqual(await locks.listLocks({ ownerId: 'nobody' }), [])

    await locks.release(['cart_1', 'cart_2'], { ownerId: 'alice' })
    assert.equal(await waiting, 'done')
    for (const bad of [{ limit: 0 }, { limit: 1.5 }, { pattern: '' }, { ownerId: 7 }, 'x']) {
      await assert.rejects(locks.listLocks(bad), { code: 'INVALID_ARGUMENT' })
    }
  } finally {
    await locks.releaseAll()
    await other.releaseAll({ ownerId: 'outsider' })
    await locks.close()
    await other.close()
  }
})

test('stats() counts acquisitions, conflicts, timeouts, renewals and lost leases; metrics() is Prometheus text', async () => {
  const locks = await LockingModuleService.connect({ redisUrl: server.url, namespace: 'stats:' })
  try {
    await locks.acquire('a', { ownerId: 'o' })
    await assert.rejects(locks.acquire('a', { ownerId: 'p' }), { code: 'LOCK_CONFLICT' })
    await assert.rejects(locks.execute('a', async () => {}, { timeout: 1 }), { code: 'LOCK_TIMEOUT' })
    await locks.execute('b', () => sleep(700), { expire: 1 })
    await assert.rejects(
      locks.execute('c', async () => {
        await raw.del('stats:c')
        await sleep(600)
      }, { expire: 1 }),
      { code: 'LOCK_LOST' },
    )
    const stats = locks.stats()
    assert.equal(stats.acquired, 3)
    assert.equal(stats.conflicts, 1)
    assert.equal(stats.timeouts, 1)
    assert.equal(stats.lostLeases, 1)
    assert.ok(stats.renewals >= 2, String(stats.renewals))
    assert.equal(stats.waits.count, 3)
    assert.ok(stats.waits.maxMs >= 900, String(stats.waits.maxMs))
    assert.ok(stats.waits.p50Ms <= stats.waits.p99Ms && stats.waits.p99Ms <= stats.waits.maxMs)

    const text = locks.metrics()
    assert.match(text, /^# TYPE ferrolock_acquired_total counter$/m)
    assert.match(text, /^ferrolock_acquired_total\{namespace="stats:"\} 3$/m)
    assert.match(text, /^ferrolock_lost_leases_total\{namespace="stats:"\} 1$/m)
    assert.match(text, /^ferrolock_wait_seconds_count\{namespace="stats:"\} 3$/m)
    assert.match(text, /^ferrolock_wait_seconds\{namespace="stats:",quantile="0.99"\} [0-9.e-]+$/m)
  } finally {
    await locks.releaseAll({ ownerId: 'o' })
    await locks.close()
  }
})

test("the logger gets Medusa's warnings for a failed renewal and a lost lease, and debug events on request", async () => {
  const own = await startRedis()
  const lines = []
  const logger = {
    debug: (message) => lines.push(['debug', message]),
    info: (message) => lines.push(['info', message]),
    warn: (message) => lines.push(['warn', message]),
    error: (message) => lines.push(['error', message]),
  }
  const password = 'log-secret-pw'
  await own.cli('config', 'set', 'requirepass', password)
  const url = `redis://:${password}@127.0.0.1:${own.port}`
  const locks = await LockingModuleService.connect({ redisUrl: url, redisOptions: { commandTimeout: 200 } }, { logger })
  const quiet = await LockingModuleService.connect({ redisUrl: url, namespace: 'quiet:' }, { logger: { warn() {} } })
  try {
    // Renewals stall (paused server) but the lease survives: Medusa's retry warning.
    await locks.execute(
      'job',
      async () => {
        await sleep(400)
        await own.cli('-a', password, '--no-auth-warning', 'client', 'pause', '1500', 'all')
        await sleep(2000)
      },
      { expire: 3 },
    )
    const renewal = lines.find(([level, m]) => level === 'warn' && m.startsWith('Failed to renew lock for key(s) "job": '))
    assert.ok(renewal, JSON.stringify(lines))
    assert.match(renewal[1], /\. Retrying in 1000ms\.$/)

    await assert.rejects(
      locks.execute('gone', async () => {
        await own.cli('-a', password, '--no-auth-warning', 'del', 'medusa_lock:gone')
        await sleep(600)
      }, { expire: 1 }),
      { code: 'LOCK_LOST' },
    )
    assert.ok(
      lines.some(
        ([level, m]) =>
          level === 'warn' &&
          m ===
            'Lost the lock for key(s) "gone" while the job was still running: the lease expired before it could be renewed. Increase "expire" if the job is expected to run this long.',
      ),
      JSON.stringify(lines),
    )
    assert.ok(!lines.some(([level]) => level === 'debug'), 'debug events stay off at the default level')
    for (const [, message] of lines) assert.ok(!message.includes(password))
  } finally {
    await locks.close()
    await quiet.close()
  }

  const chatty = await LockingModuleService.connect({ redisUrl: url }, { logger, logLevel: 'debug' })
  await chatty.execute('k', async () => {})
  await chatty.close()
  await sleep(100) // log lines reach the logger asynchronously, like any event
  assert.ok(lines.some(([level, m]) => level === 'debug' && /^ferrolock: lock acquired keys=\["k"\] owner="execute:/.test(m)))
  assert.ok(lines.some(([level, m]) => level === 'debug' && /^ferrolock: locks released keys=\["k"\]/.test(m)))
  for (const [, message] of lines) assert.ok(!message.includes(password))
  await assert.rejects(
    (async () => new LockingModuleService({ redisUrl: url }, { logger, logLevel: 'loud' }))(),
    { code: 'INVALID_ARGUMENT', message: /logLevel/ },
  )
  await own.stop()
})
