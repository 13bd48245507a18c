'use strict'

const { test, before, after } = require('node:test')
const assert = require('node:assert/strict')
const { execFile } = require('node:child_process')
const { LockingModuleService, ERROR_CODES } = require('..')
const { startRedis, freePort } = require('./helpers/redis')

let redis
let service
let namespaceSeq = 0

/** A fresh namespace per test, so tests never see each other's keys. */
function namespace() {
  namespaceSeq += 1
  return `api${namespaceSeq}:`
}

async function connect(options = {}) {
  return LockingModuleService.connect({ redisUrl: redis.url, ...options })
}

async function keysOf(prefix) {
  const out = await redis.cli('--scan', '--pattern', `${prefix}*`)
  return out ? out.split('\n').sort() : []
}

async function scriptCalls() {
  const stats = await redis.cli('info', 'commandstats')
  const calls = (name) => Number((stats.match(new RegExp(`cmdstat_${name}:calls=(\\d+)`)) || [0, 0])[1])
  return calls('evalsha') + calls('eval') + calls('set') + calls('del') + calls('scan')
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

before(async () => {
  redis = await startRedis()
  service = await connect()
})

after(async () => {
  await service?.close()
  await redis?.stop()
})

test('acquire takes all keys or none, with Medusa messages, codes and types', async () => {
  const ns = namespace()
  const locks = await connect({ namespace: ns })
  await locks.acquire('b', { ownerId: 'other' })
  await assert.rejects(locks.acquire(['a', 'b', 'c'], { ownerId: 'me', expire: 10 }), (error) => {
    assert.ok(error instanceof Error)
    assert.equal(error.message, 'Failed to acquire lock for key "b"')
    assert.equal(error.code, ERROR_CODES.LOCK_CONFLICT)
    assert.equal(error.type, 'conflict')
    return true
  })
  assert.deepEqual(await keysOf(ns), [`${ns}b`], 'no key of the failed call stays taken')

  await locks.acquire(['a', 'c'], { ownerId: 'me', expire: 10 })
  assert.equal(await redis.cli('get', `${ns}a`), 'me')
  const ttl = Number(await redis.cli('pttl', `${ns}c`))
  assert.ok(ttl > 9000 && ttl <= 10000, `ttl ${ttl}`)

  await locks.acquire('free')
  assert.equal(await redis.cli('get', `${ns}free`), '*')
  assert.equal(await redis.cli('pttl', `${ns}free`), '-1', 'no expire: the lock does not expire')
  await assert.rejects(locks.acquire('free'), { code: 'LOCK_CONFLICT' })
  await locks.close()
})

test('the same owner re-enters, also with awaitQueue, and refreshes the TTL', async () => {
  const ns = namespace()
  const locks = await connect({ namespace: ns })
  await locks.acquire('k', { ownerId: 'me', expire: 2 })
  await locks.acquire('k', { ownerId: 'me', expire: 50, awaitQueue: true })
  assert.ok(Number(await redis.cli('pttl', `${ns}k`)) > 45000)
  assert.equal(await locks.release('k', { ownerId: 'someone' }), false)
  assert.equal(await locks.release(['k'], { ownerId: 'me' }), true)
  assert.deepEqual(await keysOf(ns), [])
  await locks.close()
})

test('release is true only when every key was released', async () => {
  const ns = namespace()
  const locks = await connect({ namespace: ns })
  await locks.acquire(['x'], { ownerId: 'me' })
  await locks.acquire(['y'], { ownerId: 'other' })
  assert.equal(await locks.release(['x', 'y'], { ownerId: 'me' }), false)
  assert.deepEqual(await keysOf(ns), [`${ns}y`])
  await locks.close()
})

test('awaitQueue waits for the holder, then times out with Medusa\'s message', async () => {
  const ns = namespace()
  const locks = await connect({ namespace: ns })
  await locks.acquire('k', { ownerId: 'holder' })
  const waiting = locks.acquire('k', { ownerId: 'waiter', awaitQueue: true, timeout: 5 })
  await sleep(100)
  await locks.release('k', { ownerId: 'holder' })
  await waiting
  assert.equal(await redis.cli('get', `${ns}k`), 'waiter')
  await assert.rejects(locks.acquire('k', { ownerId: 'third', awaitQueue: true, timeout: 1 }), {
    message: 'Timed-out acquiring lock.',
    code: 'LOCK_TIMEOUT',
    type: 'conflict',
  })
  await locks.close()
})

test('releaseAll compares and deletes only this owner\'s keys inside a glob namespace', async () => {
  const ns = `shop[${namespaceSeq++}]*:`
  const locks = await connect({ namespace: ns })
  await redis.cli('set', `${ns.slice(0, -2)}X:outside`, '*')
  await locks.acquire(['a', 'b'])
  await locks.acquire(['c'], { ownerId: 'other' })
  await locks.releaseAll()
  assert.deepEqual(await keysOf(ns.slice(0, 4)), [`${ns.slice(0, -2)}X:outside`, `${ns}c`].sort())
  await locks.releaseAll({ ownerId: 'other' })
  assert.deepEqual(await keysOf(ns.replace(/[[\]*]/g, '\\$&')), [])
  await redis.cli('del', `${ns.slice(0, -2)}X:outside`)
  await locks.close()
})

test('execute returns what the job returns and releases its keys', async () => {
  const ns = namespace()
  const locks = await connect({ namespace: ns })
  let seenOwner
  const value = await locks.execute(['a', 'b'], async (signal) => {
    assert.ok(signal instanceof AbortSignal)
    assert.equal(signal.aborted, false)
    seenOwner = await redis.cli('get', `${ns}a`)
    return { total: 42 }
  })
  assert.deepEqual(value, { total: 42 })
  assert.match(seenOwner, /^execute:[0-9a-f-]{36}$/)
  assert.equal(await locks.execute('a', () => 7), 7, 'a plain return value')
  assert.equal(await locks.execute('a', () => undefined), undefined)
  assert.deepEqual(await keysOf(ns), [])
  await locks.close()
})

test('execute passes the job\'s own error through, sync or async, and releases', async () => {
  const ns = namespace()
  const locks = await connect({ namespace: ns })
  class OutOfStock extends Error {
    constructor() {
      super('out of stock')
      this.sku = 'sku_1'
    }
  }
  const thrown = new OutOfStock()
  await assert.rejects(locks.execute('k', async () => { throw thrown }), (error) => error === thrown)
  await assert.rejects(locks.execute('k', () => { throw thrown }), (error) => error === thrown)
  await assert.rejects(locks.execute('k', () => Promise.reject('a string')), (error) => error === 'a string')
  assert.deepEqual(await keysOf(ns), [])
  await locks.close()
})

test('execute renews the lease while a job outlives expire', async () => {
  const ns = namespace()
  const locks = await connect({ namespace: ns })
  const result = await locks.execute('slow', async (signal) => {
    await sleep(2500)
    assert.equal(signal.aborted, false)
    return Number(await redis.cli('pttl', `${ns}slow`))
  }, { expire: 1 })
  assert.ok(result > 0, 'still held after 2.5 leases')
  assert.deepEqual(await keysOf(ns), [])
  await locks.close()
})

for (const [name, steal] of [
  ['deleted in Redis', (key) => redis.cli('del', key)],
  ['taken over by another owner', (key) => redis.cli('set', key, 'intruder')],
]) {
  test(`a lease ${name} mid-job aborts the signal with LOCK_LOST and execute rejects`, async () => {
    const ns = namespace()
    const locks = await connect({ namespace: ns })
    let reason
    await assert.rejects(
      locks.execute('k', async (signal) => {
        await steal(`${ns}k`)
        await new Promise((resolve) => signal.addEventListener('abort', resolve, { once: true }))
        reason = signal.reason
        return 'finished anyway'
      }, { expire: 1 }),
      (error) => {
        assert.equal(error.code, 'LOCK_LOST')
        assert.equal(error.type, 'conflict')
        assert.match(error.message, /"k"/)
        return true
      },
    )
    assert.equal(reason.code, 'LOCK_LOST')
    const left = await keysOf(ns)
    if (name.startsWith('taken')) assert.equal(await redis.cli('get', `${ns}k`), 'intruder', 'the intruder keeps its lock')
    else assert.deepEqual(left, [])
    await redis.cli('del', `${ns}k`)
    await locks.close()
  })
}

test('a timed-out execute ran nothing and holds nothing', async () => {
  const ns = namespace()
  const locks = await connect({ namespace: ns })
  await locks.acquire('held', { ownerId: 'holder', expire: 30 })
  let ran = false
  const started = Date.now()
  await assert.rejects(locks.execute(['free', 'held'], () => { ran = true }, { timeout: 1 }), {
    message: 'Timed-out acquiring lock.',
    code: 'LOCK_TIMEOUT',
  })
  const elapsed = Date.now() - started
  assert.ok(elapsed >= 950 && elapsed < 3000, `waited ${elapsed} ms`)
  assert.equal(ran, false)
  assert.deepEqual(await keysOf(ns), [`${ns}held`])
  assert.equal(await redis.cli('get', `${ns}held`), 'holder')
  await locks.close()
})

test('ABBA: opposite key orders in one process both complete', async () => {
  const ns = namespace()
  const locks = await connect({ namespace: ns })
  const run = (keys) => (async () => {
    for (let i = 0; i < 100; i++) await locks.execute(keys, () => sleep(0), { timeout: 5 })
  })()
  await Promise.all([run(['a', 'b']), run(['b', 'a']), run(['b', 'a'])])
  assert.deepEqual(await keysOf(ns), [])
  await locks.close()
})

test('bad call input is a rejection naming the parameter, and touches nothing in Redis', async () => {
  const cases = [
    ['acquire', [[]], 'keys'],
    ['acquire', [''], 'keys'],
    ['acquire', [['a', 1]], 'keys'],
    ['acquire', [42], 'keys'],
    ['acquire', ['k', { expire: Number.NaN }], 'expire'],
    ['acquire', ['k', { expire: -1 }], 'expire'],
    ['acquire', ['k', { ownerId: 5 }], 'ownerId'],
    ['acquire', ['k', { awaitQueue: 'yes' }], 'awaitQueue'],
    ['acquire', ['k', { timeout: -3, awaitQueue: true }], 'timeout'],
    ['acquire', ['k', 'not args'], 'args'],
    ['release', [[]], 'keys'],
    ['release', ['k', { ownerId: '' }], 'ownerId'],
    ['releaseAll', [{ ownerId: 3 }], 'ownerId'],
    ['execute', [[], () => 1], 'keys'],
    ['execute', ['k', 'not a function'], 'job'],
    ['execute', ['k', undefined], 'job'],
    ['execute', ['k', () => 1, { timeout: Number.NaN }], 'timeout'],
    ['execute', ['k', () => 1, { expire: -5 }], 'expire'],
    ['execute', ['k', () => 1, { expire: '10' }], 'expire'],
  ]
  const before = await scriptCalls()
  for (const [method, args, parameter] of cases) {
    let promise
    assert.doesNotThrow(() => { promise = service[method](...args) }, `${method} must not throw synchronously`)
    await assert.rejects(promise, (error) => {
      assert.equal(error.code, 'INVALID_ARGUMENT', `${method}(${JSON.stringify(args)})`)
      assert.equal(error.type, 'invalid_argument')
      assert.ok(error.message.includes(`"${parameter}"`), `${error.message} names ${parameter}`)
      return true
    })
  }
  assert.equal(await scriptCalls(), before, 'nothing reached Redis')
})

test('bad options are rejected up front, naming the option, without echoing the URL', async () => {
  const cases = [
    [undefined, 'options'],
    [{}, 'redisUrl'],
    [{ redisUrl: 42 }, 'redisUrl'],
    [{ redisUrl: 'http://user:hunter2@example.com' }, 'redisUrl'],
    [{ redisUrl: 'redis://:hunter2@bad host:port' }, 'redisUrl'],
    [{ redisUrl: redis.url, namespace: 5 }, 'namespace'],
    [{ redisUrl: redis.url, waitLockingTimeout: 'soon' }, 'waitLockingTimeout'],
    [{ redisUrl: redis.url, waitLockingTimeout: -1 }, 'waitLockingTimeout'],
    [{ redisUrl: redis.url, defaultRetryInterval: Number.NaN }, 'defaultRetryInterval'],
    [{ redisUrl: redis.url, maximumRetryInterval: {} }, 'maximumRetryInterval'],
    [{ redisUrl: redis.url, backoffFactor: 0.5 }, 'backoffFactor'],
    [{ redisUrl: redis.url, redisOptions: 'fast' }, 'redisOptions'],
    [{ redisUrl: redis.url, redisOptions: { db: 'one' } }, 'redisOptions.db'],
    [{ redisUrl: redis.url, redisOptions: { password: 123 } }, 'redisOptions.password'],
    [{ redisUrl: redis.url, redisOptions: { connectTimeout: -1 } }, 'redisOptions.connectTimeout'],
    [{ redisUrl: redis.url, redisOptions: { tls: 'on' } }, 'redisOptions.tls'],
  ]
  for (const [options, name] of cases) {
    assert.throws(() => new LockingModuleService(options), (error) => {
      assert.equal(error.code, 'INVALID_ARGUMENT')
      assert.ok(error.message.includes(name), `${error.message} names ${name}`)
      assert.ok(!error.message.includes('hunter2'), 'no password in the message')
      return true
    })
    await assert.rejects(LockingModuleService.connect(options), { code: 'INVALID_ARGUMENT' })
  }
})

test('numeric options given as strings (env vars) are accepted, as Medusa does', async () => {
  const locks = await connect({ waitLockingTimeout: '2', defaultRetryInterval: '10', namespace: namespace() })
  await locks.close()
})

test('unknown redisOptions keys are accepted and reported once as ignored', async () => {
  const warnings = []
  const locks = await LockingModuleService.connect(
    { redisUrl: redis.url, namespace: namespace(), redisOptions: { lazyConnect: true, db: 0, family: 4 } },
    { logger: { warn: (message) => warnings.push(message) } },
  )
  assert.deepEqual(locks.ignoredOptions, ['redisOptions.lazyConnect', 'redisOptions.family'])
  assert.equal(warnings.length, 1)
  assert.match(warnings[0], /redisOptions\.lazyConnect.*redisOptions\.family/)
  await locks.close()
})

test('an unreachable server is a REDIS_ERROR within the connect timeout, without the password', async () => {
  const port = await freePort()
  const started = Date.now()
  await assert.rejects(
    LockingModuleService.connect({ redisUrl: `redis://:hunter2@127.0.0.1:${port}`, redisOptions: { connectTimeout: 1000 } }),
    (error) => {
      assert.equal(error.code, 'REDIS_ERROR')
      assert.equal(error.type, 'unexpected_state')
      assert.ok(!String(error.message).includes('hunter2'))
      return true
    },
  )
  assert.ok(Date.now() - started < 3000, `took ${Date.now() - started} ms`)

  // A blackhole (accepts TCP, never answers) is bounded by the timeouts too.
  const net = require('node:net')
  const sockets = []
  const blackhole = net.createServer((socket) => sockets.push(socket)).listen(0, '127.0.0.1')
  await new Promise((resolve) => blackhole.once('listening', resolve))
  const t0 = Date.now()
  await assert.rejects(
    LockingModuleService.connect({
      redisUrl: `redis://127.0.0.1:${blackhole.address().port}`,
      redisOptions: { connectTimeout: 800, commandTimeout: 800 },
    }),
    { code: 'REDIS_ERROR' },
  )
  assert.ok(Date.now() - t0 < 3000, `took ${Date.now() - t0} ms`)
  sockets.forEach((socket) => socket.destroy())
  blackhole.close()
})

test('a wrong password fails clearly without showing it', async () => {
  const secured = await startRedis({ args: ['--requirepass', 'right-pass'] })
  try {
    await assert.rejects(LockingModuleService.connect({ redisUrl: `redis://:wrong-pass@127.0.0.1:${secured.port}` }), (error) => {
      assert.equal(error.code, 'REDIS_ERROR')
      assert.ok(!error.message.includes('wrong-pass') && !error.message.includes('right-pass'), error.message)
      return true
    })
    const locks = await LockingModuleService.connect({ redisUrl: `redis://127.0.0.1:${secured.port}`, redisOptions: { password: 'right-pass', db: 2 } })
    await locks.acquire('k')
    assert.equal(await secured.cli('-a', 'right-pass', '--no-auth-warning', '-n', '2', 'get', 'medusa_lock:k'), '*')
    await locks.close()
  } finally {
    await secured.stop()
  }
})

test('close aborts running jobs with CLOSED, rejects later calls, and lets the process exit', async () => {
  const ns = namespace()
  const locks = await connect({ namespace: ns })
  let reason
  const running = locks.execute('k', (signal) => new Promise((resolve) => {
    signal.addEventListener('abort', () => { reason = signal.reason; resolve('done') }, { once: true })
  }))
  await sleep(100)
  await locks.close()
  await assert.rejects(running, { code: 'CLOSED' })
  assert.equal(reason.code, 'CLOSED')
  for (const call of [() => locks.acquire('x'), () => locks.release('x'), () => locks.releaseAll(), () => locks.execute('x', () => 1)]) {
    await assert.rejects(call(), { code: 'CLOSED', type: 'unexpected_state' })
  }
  await locks.close()

  const child = `
    const { LockingModuleService } = require(${JSON.stringify(require.resolve('..'))})
    ;(async () => {
      const locks = await LockingModuleService.connect({ redisUrl: ${JSON.stringify(redis.url)}, namespace: ${JSON.stringify(ns)} })
      await locks.execute('child', async () => 1)
      await locks.acquire('held', { expire: 30 })
      await locks.close()
      console.log('closed')
    })()`
  const started = Date.now()
  const output = await new Promise((resolve, reject) => {
    execFile(process.execPath, ['-e', child], { timeout: 10000 }, (error, stdout) => (error ? reject(error) : resolve(stdout)))
  })
  assert.equal(output.trim(), 'closed')
  assert.ok(Date.now() - started < 5000, 'the child exited by itself')
  await redis.cli('del', `${ns}held`)
})
