'use strict'

// ferrolock on a bad day: Redis unreachable, silent, paused, killed and
// restarted empty; connections stalled or cut by a TCP proxy (a partition);
// a lock holder SIGKILLed; close() with calls in flight. Every call must
// settle within the documented timeouts, a lease that may have lapsed must
// abort its job before anybody else can get the key, and the same service
// object must work again once Redis is back.

const { test, before, after, afterEach } = require('node:test')
const assert = require('node:assert/strict')
const path = require('node:path')
const { fork } = require('node:child_process')
const { performance } = require('node:perf_hooks')
const Redis = require('ioredis')
const { LockingModuleService } = require('..')
const { startRedis, freePort } = require('./helpers/redis')
const { startProxy } = require('../scripts/proxy')

const FAULT_WORKER = path.join(__dirname, 'workers', 'fault-worker.js')
const CLOSE_WORKER = path.join(__dirname, 'workers', 'close-worker.js')

/** README: connectTimeout and commandTimeout default to 5000 ms. */
const DEFAULT_TIMEOUT_MS = 5000
/** Slack on top of a documented timeout before a call counts as hanging. */
const SLACK_MS = 1500

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

let redis
let namespaceSeq = 0
const cleanup = []

/** A fresh namespace per test, so tests never see each other's keys. */
function namespace() {
  namespaceSeq += 1
  return `faults${namespaceSeq}:`
}

/** A service that is closed after the test. */
async function connect(options) {
  const locks = await LockingModuleService.connect(options)
  cleanup.push(() => locks.close())
  return locks
}

async function proxy() {
  const started = await startProxy({ targetPort: redis.port })
  cleanup.push(() => started.close())
  return started
}

/** A plain ioredis client on the test's Redis (not through any proxy), quit after the test. */
async function rawClient() {
  const client = new Redis(redis.url, { lazyConnect: true, maxRetriesPerRequest: 1 })
  await client.connect()
  cleanup.push(() => client.disconnect())
  return client
}

/**
 * When `key`'s TTL ends in Redis, on the Date.now() clock every process of
 * the machine shares: `{ earliest, latest }`, bracketing the PTTL round trip
 * (PTTL truncates to the millisecond, hence the + 1).
 */
async function leaseEnd(client, key) {
  const sent = Date.now()
  const pttl = await client.pttl(key)
  const received = Date.now()
  assert.ok(pttl > 0, `${key} has a TTL (pttl ${pttl})`)
  return { earliest: sent + pttl, latest: received + pttl + 1 }
}

/** Settles `promise` and measures how long that took: `{ ms, value }` or `{ ms, error }`. */
async function timed(promise) {
  const started = performance.now()
  try {
    const value = await promise
    return { ms: performance.now() - started, value }
  } catch (error) {
    return { ms: performance.now() - started, error }
  }
}

/** Asserts a `timed()` outcome is a rejection with one of `codes` within `maxMs`. */
function assertRejected(outcome, codes, maxMs, what) {
  assert.ok(outcome.error, `${what}: expected a rejection, got ${JSON.stringify(outcome.value)}`)
  assert.ok(
    codes.includes(outcome.error.code),
    `${what}: expected ${codes.join(' or ')}, got ${outcome.error.code}: ${outcome.error.message}`,
  )
  if (outcome.error.code === 'REDIS_ERROR') assert.match(outcome.error.message, /^Redis error: /, what)
  assert.ok(outcome.ms <= maxMs, `${what}: settled after ${Math.round(outcome.ms)} ms, limit ${maxMs} ms`)
}

/** Resolves once `predicate()` is true; rejects after `ms`. */
async function waitFor(predicate, ms, what) {
  const deadline = performance.now() + ms
  while (!(await predicate())) {
    if (performance.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`)
    await sleep(10)
  }
}

/** Forks a fault worker; `messages` yields its IPC messages in order. */
function forkWorker(cfg) {
  const child = fork(FAULT_WORKER, [JSON.stringify(cfg)], { stdio: 'inherit' })
  const queue = []
  const waiting = []
  child.on('message', (message) => {
    const next = waiting.shift()
    if (next) next.resolve(message)
    else queue.push(message)
  })
  const exited = new Promise((resolve) => child.once('exit', (code, signal) => resolve(code ?? signal)))
  exited.then((status) => {
    for (const next of waiting.splice(0)) next.reject(new Error(`worker exited with ${status}`))
  })
  cleanup.push(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
  })
  return {
    child,
    exited,
    /** The next IPC message, or a rejection after `ms`. */
    next(ms = 15_000) {
      if (queue.length > 0) return Promise.resolve(queue.shift())
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`no message from the worker within ${ms} ms`)), ms)
        waiting.push({
          resolve: (message) => {
            clearTimeout(timer)
            resolve(message)
          },
          reject: (error) => {
            clearTimeout(timer)
            reject(error)
          },
        })
      })
    },
  }
}

async function kill9(worker) {
  worker.child.kill('SIGKILL')
  assert.equal(await worker.exited, 'SIGKILL')
}

/** An execute job that records when its signal aborted and why. */
function watchSignal(signal) {
  const seen = { abortedAt: null, abortedAtMs: null, reason: null }
  signal.addEventListener('abort', () => {
    seen.abortedAt = Date.now()
    seen.abortedAtMs = performance.now()
    seen.reason = signal.reason
  })
  return seen
}

before(async () => {
  // DEBUG SLEEP needs the debug command (off by default since Redis 7).
  redis = await startRedis({ args: ['--enable-debug-command', 'yes'] })
})

after(async () => {
  await redis?.stop()
})

afterEach(async () => {
  for (const step of cleanup.splice(0).reverse()) {
    try {
      await step()
    } catch {}
  }
})

test('nothing listening: every call rejects with REDIS_ERROR within the connect timeout; execute by its timeout', async () => {
  const url = `redis://:s3cret@127.0.0.1:${await freePort()}`
  const outcome = await timed(LockingModuleService.connect({ redisUrl: url }))
  assertRejected(outcome, ['REDIS_ERROR'], DEFAULT_TIMEOUT_MS + SLACK_MS, 'connect()')

  const locks = new LockingModuleService({ redisUrl: url })
  cleanup.push(() => locks.close())
  let ran = false
  const calls = {
    acquire: locks.acquire('k'),
    'acquire with expire': locks.acquire(['k', 'l'], { ownerId: 'o', expire: 10 }),
    release: locks.release('k'),
    releaseAll: locks.releaseAll(),
    'releaseAll for an owner': locks.releaseAll({ ownerId: 'o' }),
    listLocks: locks.listLocks(),
  }
  const outcomes = await Promise.all(Object.values(calls).map(timed))
  Object.keys(calls).forEach((name, i) => assertRejected(outcomes[i], ['REDIS_ERROR'], DEFAULT_TIMEOUT_MS + SLACK_MS, name))

  const waiting = await timed(locks.acquire('k', { awaitQueue: true, timeout: 1 }))
  assertRejected(waiting, ['REDIS_ERROR', 'LOCK_TIMEOUT'], 1000 + DEFAULT_TIMEOUT_MS + SLACK_MS, 'acquire awaitQueue')
  const executed = await timed(locks.execute('k', () => (ran = true), { timeout: 1 }))
  assertRejected(executed, ['REDIS_ERROR', 'LOCK_TIMEOUT'], 1000 + SLACK_MS, 'execute({ timeout: 1 })')
  assert.equal(ran, false, 'the job never ran')
})

test('a Redis that accepts connections but never answers: REDIS_ERROR within the default timeouts, execute within its own', async (t) => {
  const silent = await proxy()
  silent.blackhole()
  const url = silent.url
  // Documented defaults: 5000 ms to connect, 5000 ms per command.
  const connecting = timed(LockingModuleService.connect({ redisUrl: url }))
  const locks = new LockingModuleService({ redisUrl: url })
  cleanup.push(() => locks.close())
  let ran = false
  const calls = {
    'connect()': connecting,
    acquire: timed(locks.acquire('k', { expire: 5 })),
    release: timed(locks.release('k')),
    releaseAll: timed(locks.releaseAll()),
    'execute({ timeout: 1 })': timed(locks.execute('k', () => (ran = true), { timeout: 1 })),
  }
  const outcomes = Object.fromEntries(await Promise.all(Object.entries(calls).map(async ([name, p]) => [name, await p])))
  for (const [name, outcome] of Object.entries(outcomes)) {
    t.diagnostic(`${name}: ${outcome.error?.code ?? 'resolved'} after ${Math.round(outcome.ms)} ms`)
  }
  for (const name of ['connect()', 'acquire', 'release', 'releaseAll']) {
    assertRejected(outcomes[name], ['REDIS_ERROR'], DEFAULT_TIMEOUT_MS + SLACK_MS, name)
  }
  assertRejected(outcomes['execute({ timeout: 1 })'], ['REDIS_ERROR', 'LOCK_TIMEOUT'], 1000 + SLACK_MS, 'execute({ timeout: 1 })')
  assert.equal(ran, false)

  // With shorter timeouts, they are what bounds every call.
  const quick = new LockingModuleService({ redisUrl: url, redisOptions: { connectTimeout: 500, commandTimeout: 500 } })
  cleanup.push(() => quick.close())
  assertRejected(await timed(quick.acquire('k')), ['REDIS_ERROR'], 500 + SLACK_MS, 'acquire, connectTimeout 500')
})

test('a connection stalled after connect: calls reject with REDIS_ERROR within commandTimeout, then the same service works', async () => {
  const ns = namespace()
  const net = await proxy()
  const locks = await connect({ redisUrl: net.url, namespace: ns, redisOptions: { connectTimeout: 1000, commandTimeout: 1000 } })
  await locks.acquire('a', { ownerId: 'me', expire: 30 })

  net.stall()
  let ran = false
  const [acquired, released, releasedAll, executed] = await Promise.all([
    timed(locks.acquire('b', { ownerId: 'me', expire: 30 })),
    timed(locks.release('a', { ownerId: 'me' })),
    timed(locks.releaseAll({ ownerId: 'me' })),
    timed(locks.execute('c', () => (ran = true), { timeout: 3 })),
  ])
  assertRejected(acquired, ['REDIS_ERROR'], 1000 + SLACK_MS, 'acquire')
  assertRejected(released, ['REDIS_ERROR'], 1000 + SLACK_MS, 'release')
  assertRejected(releasedAll, ['REDIS_ERROR'], 1000 + SLACK_MS, 'releaseAll')
  assertRejected(executed, ['REDIS_ERROR', 'LOCK_TIMEOUT'], 3000 + SLACK_MS, 'execute({ timeout: 3 })')
  assert.equal(ran, false)

  // Heal the partition, dropping what it held back.
  net.cut()
  net.resume()
  assert.deepEqual(Object.keys(await locks.acquire('d', { ownerId: 'me', expire: 30 })), ['d'])
  assert.equal(await locks.release(['a', 'd'], { ownerId: 'me' }), true)
  assert.equal(await locks.execute('e', () => 'fine'), 'fine')
})

test('Redis restarted mid-job (data gone): the renewal finds the lease lost, the signal aborts, execute rejects with LOCK_LOST', async () => {
  const ns = namespace()
  const locks = await connect({ redisUrl: redis.url, namespace: ns })
  let seen
  let restartedAt
  const outcome = await timed(
    locks.execute(
      'job',
      async (signal) => {
        seen = watchSignal(signal)
        await redis.restart()
        restartedAt = performance.now()
        // Renewal every third of the 3 s lease: the next one finds the key gone.
        await waitFor(() => signal.aborted, 3000 + SLACK_MS, 'the signal to abort')
        return 'finished anyway'
      },
      { expire: 3 },
    ),
  )
  assertRejected(outcome, ['LOCK_LOST'], 10_000, 'execute')
  assert.equal(outcome.error.type, 'conflict')
  assert.equal(seen.reason?.code, 'LOCK_LOST', 'the signal\'s reason is the LOCK_LOST error')
  assert.ok(seen.abortedAtMs - restartedAt <= 3000 + SLACK_MS, `aborted ${Math.round(seen.abortedAtMs - restartedAt)} ms after the restart`)

  // The same service works again: the first call after the restart succeeds.
  await locks.acquire('after', { ownerId: 'me', expire: 10 })
  assert.equal(await redis.cli('get', `${ns}after`), 'me')
  assert.equal(await locks.execute('job', () => 'again'), 'again')
})

test('connection cut mid-job while Redis keeps the key: the client reconnects, renewals succeed, the job is not aborted', async () => {
  const ns = namespace()
  const net = await proxy()
  const locks = await connect({ redisUrl: net.url, namespace: ns })
  let seen
  const value = await locks.execute(
    'job',
    async (signal, grant) => {
      seen = watchSignal(signal)
      // Lease 3 s, renewed every second; cut twice between renewals, and run past the first lease.
      await sleep(1300)
      net.cut()
      await sleep(1200)
      net.cut({ reset: true })
      await sleep(1700)
      assert.equal(await redis.cli('get', `${ns}job`), grant.ownerId, 'still ours in Redis after 4.2 s of a 3 s lease')
      const pttl = Number(await redis.cli('pttl', `${ns}job`))
      assert.ok(pttl > 1000, `renewed: pttl ${pttl}`)
      return 'kept'
    },
    { expire: 3 },
  )
  assert.equal(value, 'kept')
  assert.equal(seen.abortedAt, null, 'the signal never aborted')
  const stats = locks.stats()
  assert.equal(stats.lostLeases, 0)
  assert.equal(stats.renewalFailures, 0, 'the renewal after each cut succeeded')
  assert.ok(stats.renewals >= 3, `renewals: ${stats.renewals}`)
  assert.equal(await redis.cli('exists', `${ns}job`), '0', 'released at the end')
})

const pauses = {
  'CLIENT PAUSE': (ms) => redis.cli('client', 'pause', String(ms), 'all'),
  // Blocks the whole server; redis-cli only returns when it wakes up.
  'DEBUG SLEEP': (ms) => {
    const sleeping = redis.cli('debug', 'sleep', String(ms / 1000))
    sleeping.catch(() => {})
    return sleep(50)
  },
}

for (const [name, pause] of Object.entries(pauses)) {
  test(`slow Redis (${name} 1.5 s, shorter than the 3 s lease): no false loss`, async () => {
    const ns = namespace()
    const locks = await connect({ redisUrl: redis.url, namespace: ns })
    let seen
    const value = await locks.execute(
      'job',
      async (signal) => {
        seen = watchSignal(signal)
        await sleep(300)
        await pause(1500)
        await sleep(3500)
        return 'kept'
      },
      { expire: 3 },
    )
    assert.equal(value, 'kept')
    assert.equal(seen.abortedAt, null, `the signal aborted: ${seen.reason?.message}`)
    assert.equal(locks.stats().lostLeases, 0)
  })

  test(`slow Redis (${name} 3.5 s, longer than the 2 s lease): the loss is signalled by the lease's end`, async () => {
    const ns = namespace()
    const locks = await connect({ redisUrl: redis.url, namespace: ns })
    let seen
    let jobStartedAt
    const outcome = await timed(
      locks.execute(
        'job',
        async (signal) => {
          jobStartedAt = performance.now()
          seen = watchSignal(signal)
          await sleep(200)
          await pause(3500)
          await waitFor(() => signal.aborted, 2000 + SLACK_MS, 'the signal to abort')
          return 'finished anyway'
        },
        { expire: 2 },
      ),
    )
    assertRejected(outcome, ['LOCK_LOST'], 10_000, 'execute')
    assert.equal(seen.reason?.code, 'LOCK_LOST')
    const abortedAfter = seen.abortedAtMs - jobStartedAt
    assert.ok(abortedAfter <= 2000 + 250, `aborted ${Math.round(abortedAfter)} ms into a 2000 ms lease`)
    // Redis is awake again: the same service works.
    await waitFor(async () => (await redis.cli('ping')) === 'PONG', 5000, 'Redis to wake up')
    assert.equal(await locks.execute('job', () => 'again'), 'again')
  })
}

test('a partition longer than the lease while another process takes the key: the first job is aborted before the other enters', async (t) => {
  const ns = namespace()
  const net = await proxy()
  const locks = await connect({ redisUrl: net.url, namespace: ns })
  const other = forkWorker({ role: 'contender', url: redis.url, namespace: ns, keys: 'hot', timeout: 15, holdMs: 1000 })
  assert.deepEqual(await other.next(), { ready: true })

  const direct = await rawClient()
  let seen
  let expiresAt
  let entered
  const outcome = await timed(
    locks.execute(
      'hot',
      async (signal) => {
        seen = watchSignal(signal)
        // When the lease ends in Redis, read directly (not through the proxy).
        expiresAt = await leaseEnd(direct, `${ns}hot`)
        other.child.send('go')
        await sleep(300)
        net.stall()
        entered = await other.next()
        // Heal the partition: what it held back (renewals, the release) now reaches Redis, late.
        net.resume()
        await waitFor(() => signal.aborted, 1000, 'the signal to abort')
        return 'finished anyway'
      },
      { expire: 2 },
    ),
  )
  const { done } = await other.next()
  t.diagnostic(`lease end ${expiresAt.earliest}..${expiresAt.latest}, aborted at ${seen.abortedAt}, other entered at ${entered.entered}`)
  assertRejected(outcome, ['LOCK_LOST'], 15_000, 'execute of the partitioned process')
  assert.equal(seen.reason?.code, 'LOCK_LOST')
  assert.ok(
    entered.entered >= expiresAt.earliest,
    `the other process entered ${expiresAt.earliest - entered.entered} ms before the lease's end`,
  )
  // No overlap: the partitioned job knew its lease was over before anybody else could get the key.
  assert.ok(
    seen.abortedAt !== null && seen.abortedAt <= entered.entered,
    `the partitioned job was aborted at ${seen.abortedAt}, the other process entered at ${entered.entered} (lease end ${JSON.stringify(expiresAt)})`,
  )
  assert.ok(seen.abortedAt <= expiresAt.latest, `aborted ${seen.abortedAt - expiresAt.latest} ms after the lease's end in Redis`)
  // The late renewals and release of the partitioned process did not touch the new holder.
  assert.equal(done.outcome, 'completed')
  assert.equal(done.aborted, false)
})

test('holder process SIGKILLed: another process gets the keys when the lease ends in Redis, not before', async (t) => {
  const ns = namespace()
  const locks = await connect({ redisUrl: redis.url, namespace: ns })
  const holder = forkWorker({ role: 'holder', url: redis.url, namespace: ns, keys: ['k1', 'k2'], expire: 3 })
  const { ownerId } = await holder.next()
  assert.equal(await redis.cli('get', `${ns}k1`), ownerId)
  await sleep(1500) // at least one renewal

  const direct = await rawClient()
  await kill9(holder)
  // The later of the two keys' ends: the keys are free only then.
  const ends = [await leaseEnd(direct, `${ns}k1`), await leaseEnd(direct, `${ns}k2`)]
  const expiresAt = {
    earliest: Math.max(...ends.map((end) => end.earliest)),
    latest: Math.max(...ends.map((end) => end.latest)),
  }

  let enteredAt
  await locks.execute(['k2', 'k1'], () => (enteredAt = Date.now()), { timeout: 10 })
  t.diagnostic(`lease end ${expiresAt.earliest}..${expiresAt.latest}, entered at ${enteredAt}`)
  assert.ok(enteredAt >= expiresAt.earliest, `got the keys ${expiresAt.earliest - enteredAt} ms before the lease's end`)
  assert.ok(enteredAt <= expiresAt.latest + SLACK_MS, `got the keys ${enteredAt - expiresAt.latest} ms after the lease's end`)
})

test('a waiting process SIGKILLed does not block the queue longer than its entry and lease', async () => {
  const ns = namespace()
  const locks = await connect({ redisUrl: redis.url, namespace: ns })
  await locks.acquire('q', { ownerId: 'holder' })
  const waiter = forkWorker({ role: 'waiter', url: redis.url, namespace: ns, keys: 'q', timeout: 30, expire: 2 })
  assert.deepEqual(await waiter.next(), { waiting: true })
  await kill9(waiter)

  // Released right away, the key may be handed to the dead waiter for its
  // 2 s lease (its queue entry lives 2 x 200 ms + 1 s): no longer than that.
  const started = performance.now()
  assert.equal(await locks.release('q', { ownerId: 'holder' }), true)
  await locks.acquire('q', { ownerId: 'next', awaitQueue: true, timeout: 10 })
  const waited = performance.now() - started
  assert.ok(waited <= 2000 + SLACK_MS, `waited ${Math.round(waited)} ms behind a dead waiter`)
  assert.equal(await redis.cli('get', `${ns}q`), 'next')
})

test('after an idle connection was cut (proxy, CLIENT KILL) or refused, the first call on the same service succeeds', async () => {
  const ns = namespace()
  const net = await proxy()
  const locks = await connect({ redisUrl: net.url, namespace: ns, redisOptions: { connectTimeout: 1000, commandTimeout: 1000 } })
  await locks.acquire('a', { ownerId: 'me' })

  net.cut()
  await sleep(100)
  await locks.acquire('b', { ownerId: 'me' })

  net.cut({ reset: true })
  await sleep(100)
  assert.equal(await locks.release('b', { ownerId: 'me' }), true)

  assert.ok(Number(await redis.cli('client', 'kill', 'type', 'normal')) >= 1)
  await sleep(100)
  await locks.acquire('c', { ownerId: 'me' })

  // Redis refuses connections for a while, then takes them again.
  net.refuse()
  net.cut()
  assertRejected(await timed(locks.acquire('d', { ownerId: 'me' })), ['REDIS_ERROR'], 1000 + SLACK_MS, 'acquire while refused')
  net.resume()
  await locks.acquire('d', { ownerId: 'me' })

  // Redis killed and restarted while the service is idle.
  await redis.restart()
  await sleep(100)
  await locks.acquire('e', { ownerId: 'me' })
  assert.equal(await redis.cli('get', `${ns}e`), 'me')
  await locks.releaseAll({ ownerId: 'me' })
  assert.equal(await redis.cli('exists', `${ns}e`), '0')
})

test('close() settles in-flight calls (waiting, running, stuck behind a stalled proxy) promptly, and the process exits', async () => {
  const ns = namespace()
  const net = await proxy()
  const child = fork(CLOSE_WORKER, [JSON.stringify({ proxyUrl: net.url, directUrl: redis.url, namespace: ns })], {
    stdio: ['ignore', 'pipe', 'inherit', 'ipc'],
  })
  cleanup.push(() => child.exitCode === null && child.signalCode === null && child.kill('SIGKILL'))
  let stdout = ''
  child.stdout.on('data', (chunk) => (stdout += chunk))
  const exited = new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal, at: performance.now() })))
  child.once('message', () => {
    net.stall()
    child.send('stalled')
  })

  const events = () => stdout.split('\n').filter(Boolean).map((line) => JSON.parse(line))
  await waitFor(() => events().some((e) => e.event === 'closing' || e.event === 'error'), 20_000, 'the child to call close()')
  const closingAt = performance.now()
  const exit = await Promise.race([exited, sleep(5000 + SLACK_MS).then(() => null)])
  assert.ok(exit !== null, `the child did not exit within ${5000 + SLACK_MS} ms of close(); its output:\n${stdout}`)
  assert.equal(exit.code, 0, stdout)
  assert.ok(exit.at - closingAt <= 5000, `exited ${Math.round(exit.at - closingAt)} ms after close()`)

  const settled = events().filter((e) => e.event === 'settled')
  const expected = [
    'acquire awaitQueue, waiting',
    'execute, waiting',
    'execute, job running',
    'acquire, stalled',
    'acquire awaitQueue, stalled',
    'release, stalled',
    'releaseAll, stalled',
    'execute, stalled',
    'acquire after close',
  ]
  assert.deepEqual(settled.map((e) => e.name).sort(), expected.sort(), stdout)
  for (const e of settled) {
    assert.ok(e.outcome === 'CLOSED' || e.outcome === 'resolved', `${e.name}: ${e.outcome}`)
    assert.ok(e.afterCloseMs !== null && e.afterCloseMs <= 1000, `${e.name} settled ${e.afterCloseMs} ms after close()`)
  }
  assert.ok(events().some((e) => e.event === 'all-settled'), stdout)
})

test('execute with a timeout settles within it (+1.5 s) when Redis stalls during the wait', async () => {
  const ns = namespace()
  const holder = await connect({ redisUrl: redis.url, namespace: ns })
  await holder.acquire(['held', 'held2'], { ownerId: 'holder' })
  const net = await proxy()
  // Default connect and command timeouts (5 s), longer than the 2 s wait.
  const locks = await connect({ redisUrl: net.url, namespace: ns })
  let ran = false

  const waiting = timed(locks.execute('held', () => (ran = true), { timeout: 2 }))
  await sleep(300)
  net.stall()
  assertRejected(await waiting, ['LOCK_TIMEOUT', 'REDIS_ERROR'], 2000 + SLACK_MS, 'execute({ timeout: 2 }) behind a stalled connection')

  // The same, with the server paused rather than the network.
  net.cut()
  net.resume()
  const paused = timed(locks.execute('held2', () => (ran = true), { timeout: 2 }))
  await sleep(300)
  await redis.cli('client', 'pause', '4000', 'all')
  assertRejected(await paused, ['LOCK_TIMEOUT', 'REDIS_ERROR'], 2000 + SLACK_MS, 'execute({ timeout: 2 }) on a paused Redis')

  // And acquire with awaitQueue: its timeout, plus at most one command timeout.
  await waitFor(async () => (await redis.cli('ping')) === 'PONG', 6000, 'Redis to resume')
  const queued = timed(locks.acquire('held', { ownerId: 'w', awaitQueue: true, timeout: 2 }))
  await sleep(300)
  net.stall()
  assertRejected(
    await queued,
    ['LOCK_TIMEOUT', 'REDIS_ERROR'],
    2000 + DEFAULT_TIMEOUT_MS + SLACK_MS,
    'acquire({ awaitQueue, timeout: 2 }) behind a stalled connection',
  )
  assert.equal(ran, false, 'no job ran')
  net.cut()
  net.resume()
  assert.equal(await redis.cli('get', `${ns}held`), 'holder', 'the timed-out callers hold nothing')
  assert.equal(await redis.cli('get', `${ns}held2`), 'holder')
})
