'use strict'

// Security: TLS (rediss://, a CA made here with openssl, a wrong CA,
// rejectUnauthorized: false, mutual TLS), an ACL user restricted to the
// namespace and to the commands ferrolock uses, wrong passwords, passwords
// never shown anywhere, hostile key contents and the key length limit.

const { test, before, after, afterEach } = require('node:test')
const assert = require('node:assert/strict')
const fs = require('node:fs')
const path = require('node:path')
const { execFile } = require('node:child_process')
const { performance } = require('node:perf_hooks')
const Redis = require('ioredis')
const { LockingModuleService } = require('..')
const { startRedis, freePort } = require('./helpers/redis')
const { makeCerts } = require('../scripts/certs')

const SECRETS_WORKER = path.join(__dirname, 'workers', 'secrets-worker.js')
/** README: keys are at most 1024 bytes. */
const MAX_KEY_BYTES = 1024
const SLACK_MS = 1500

/**
 * The smallest ACL found by trial (removing one rule at a time until the
 * workload of the ACL test broke or ACL LOG showed a denial) for the
 * default namespace `medusa_lock:`. `+client|setname` is only needed with
 * `redisOptions.connectionName`. Keys containing `{` or `}` put their queue
 * keys behind another hash tag (`ferrolock:q:{tag}medusa_lock:…`), hence the
 * `{*}` patterns.
 */
const MINIMAL_ACL = [
  'resetkeys', 'resetchannels', '-@all',
  '+ping', '+evalsha', '+script|load', '+scan', '+hscan', '+subscribe',
  '+get', '+mget', '+set', '+getset', '+del', '+exists', '+pttl', '+pexpire', '+persist', '+time', '+publish',
  '+zadd', '+zrem', '+zrange', '+hset', '+hget', '+hdel', '+hkeys', '+hexists', '+hlen',
  '~medusa_lock:*',
  '~ferrolock:q:{medusa_lock:*', '~ferrolock:d:{medusa_lock:*',
  '~ferrolock:q:{*}medusa_lock:*', '~ferrolock:d:{*}medusa_lock:*',
  '~ferrolock:o:{medusa_lock:}*', '~ferrolock:f:medusa_lock:',
  '&ferrolock:wake:medusa_lock:',
]

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

/** The ACL rules the README documents (`ACL SETUSER locker on >PASSWORD …`), or null. */
function readmeAcl() {
  const readme = fs.readFileSync(path.join(__dirname, '..', 'README.md'), 'utf8')
  const block = readme.match(/ACL SETUSER locker on >PASSWORD([\s\S]*?)```/)
  return block ? block[1].trim().split(/\s+/) : null
}

const ACLS = {
  'the minimal ACL found by trial': () => MINIMAL_ACL,
  "the README's ACL": readmeAcl,
}

let certs
let plain
let secured
let selfSigned
let mutual
const cleanup = []

before(async () => {
  certs = makeCerts()
  plain = await startRedis()
  secured = await startRedis({ tls: { cert: certs.files.server, key: certs.files.serverKey, ca: certs.files.ca } })
  selfSigned = await startRedis({ tls: { cert: certs.files.selfSigned, key: certs.files.selfSignedKey, ca: certs.files.selfSigned } })
  mutual = await startRedis({
    tls: {
      cert: certs.files.server,
      key: certs.files.serverKey,
      ca: certs.files.ca,
      authClients: true,
      clientCert: certs.files.client,
      clientKey: certs.files.clientKey,
    },
  })
})

after(async () => {
  for (const server of [plain, secured, selfSigned, mutual]) await server?.stop()
  certs?.remove()
})

afterEach(async () => {
  for (const step of cleanup.splice(0).reverse()) {
    try {
      await step()
    } catch {}
  }
})

async function connect(options, extras) {
  const locks = await LockingModuleService.connect(options, extras)
  cleanup.push(() => locks.close())
  return locks
}

async function timed(promise) {
  const started = performance.now()
  try {
    return { ms: performance.now() - started, value: await promise }
  } catch (error) {
    return { ms: performance.now() - started, error }
  }
}

/** The workload every connection setting must carry: acquire, release, execute, releaseAll. */
async function exercise(locks, cli, ns) {
  const tokens = await locks.acquire(['a', 'b'], { ownerId: 'me', expire: 30 })
  assert.deepEqual(Object.keys(tokens), ['a', 'b'])
  assert.equal(await cli('get', `${ns}a`), 'me')
  assert.equal(await locks.release('a', { ownerId: 'me' }), true)
  assert.equal(await locks.execute(['c'], async (signal) => !signal.aborted, { expire: 5 }), true)
  await locks.releaseAll({ ownerId: 'me' })
  assert.equal(await cli('exists', `${ns}b`), '0')
}

test('TLS: acquire, release, execute and releaseAll over rediss:// trusting the test CA (PEM string or Buffer)', async () => {
  for (const [i, ca] of [certs.pem.ca, Buffer.from(certs.pem.ca)].entries()) {
    const ns = `tls${i}:`
    const locks = await connect({ redisUrl: secured.url, namespace: ns, redisOptions: { tls: { ca } } })
    await exercise(locks, secured.cli, ns)
  }
  // As in ioredis, a tls option turns TLS on for a redis:// URL too.
  const locks = await connect({ redisUrl: `redis://127.0.0.1:${secured.port}`, namespace: 'tls2:', redisOptions: { tls: { ca: certs.pem.ca } } })
  await exercise(locks, secured.cli, 'tls2:')
})

test('TLS: a wrong CA, or none, fails clearly with REDIS_ERROR naming the certificate, within the connect timeout', async () => {
  for (const [name, redisOptions] of Object.entries({
    'a CA that did not sign the server certificate': { tls: { ca: certs.pem.otherCa } },
    'the system trust store': { tls: true },
    'no tls option (rediss:// URL)': {},
  })) {
    const outcome = await timed(LockingModuleService.connect({ redisUrl: secured.url, redisOptions: { connectTimeout: 2000, ...redisOptions } }))
    assert.ok(outcome.error, `${name}: connected`)
    assert.equal(outcome.error.code, 'REDIS_ERROR', `${name}: ${outcome.error.message}`)
    assert.match(outcome.error.message, /certificate|tls|ssl|issuer/i, name)
    assert.ok(outcome.ms <= 2000 + SLACK_MS, `${name}: ${Math.round(outcome.ms)} ms`)
  }
  // Plain text to a TLS port, and TLS to a plain port: errors, no hang.
  for (const [name, options] of Object.entries({
    'redis:// to a TLS port': { redisUrl: `redis://127.0.0.1:${secured.port}` },
    'rediss:// to a plain port': { redisUrl: `rediss://127.0.0.1:${plain.port}`, redisOptions: { tls: { ca: certs.pem.ca } } },
  })) {
    const outcome = await timed(LockingModuleService.connect({ ...options, redisOptions: { ...options.redisOptions, connectTimeout: 2000, commandTimeout: 2000 } }))
    assert.equal(outcome.error?.code, 'REDIS_ERROR', `${name}: ${outcome.error?.message}`)
    assert.ok(outcome.ms <= 2000 * 2 + SLACK_MS, `${name}: ${Math.round(outcome.ms)} ms`)
  }
})

test('TLS: rejectUnauthorized: false connects to a server with a self-signed certificate', async () => {
  const refused = await timed(LockingModuleService.connect({ redisUrl: selfSigned.url, redisOptions: { connectTimeout: 2000 } }))
  assert.equal(refused.error?.code, 'REDIS_ERROR', 'verified by default')
  const locks = await connect({ redisUrl: selfSigned.url, namespace: 'insecure:', redisOptions: { tls: { rejectUnauthorized: false } } })
  await exercise(locks, selfSigned.cli, 'insecure:')
})

test('TLS: mutual TLS with a client certificate (cert + key)', async () => {
  const locks = await connect({
    redisUrl: mutual.url,
    namespace: 'mtls:',
    redisOptions: { tls: { ca: certs.pem.ca, cert: certs.pem.client, key: Buffer.from(certs.pem.clientKey) } },
  })
  await exercise(locks, mutual.cli, 'mtls:')
  const outcome = await timed(LockingModuleService.connect({ redisUrl: mutual.url, redisOptions: { connectTimeout: 2000, tls: { ca: certs.pem.ca } } }))
  assert.equal(outcome.error?.code, 'REDIS_ERROR', 'without a client certificate')
  assert.ok(outcome.ms <= 2000 + SLACK_MS, `${Math.round(outcome.ms)} ms`)
})

for (const [aclName, rules] of Object.entries(ACLS)) {
  test(`${aclName}: a user limited to the namespace and the commands ferrolock uses can do everything, waiting included`, async () => {
    assert.ok(rules(), 'the README documents an ACL')
    await plain.cli('acl', 'setuser', 'locker', 'reset', 'on', '>lockerPass1', ...rules())
    await plain.cli('acl', 'log', 'reset')
    cleanup.push(() => plain.cli('acl', 'deluser', 'locker'))
    const logs = []
    const logger = { warn: (m) => logs.push(m), error: (m) => logs.push(m) }
    const url = `redis://locker:lockerPass1@127.0.0.1:${plain.port}`
    const a = await connect({ redisUrl: url }, { logger })
    const b = await connect({ redisUrl: `redis://127.0.0.1:${plain.port}`, redisOptions: { username: 'locker', password: 'lockerPass1' } }, { logger })
    // Both subscribed to the wake channel: waiters are woken, not only polled.
    await sleep(100)
    assert.equal((await plain.cli('pubsub', 'numsub', 'ferrolock:wake:medusa_lock:')).split('\n')[1], '2')

    await a.acquire(['k1', 'k2', 'br{ace}s', 'odd}key'], { ownerId: 'o1', expire: 30 })
    await a.acquire('anon')
    await assert.rejects(b.acquire('k1', { ownerId: 'o2' }), { code: 'LOCK_CONFLICT' })
    // Waiters: a single-key execute (handed the lock by the release), a
    // multi-key execute (woken), a named awaitQueue acquire, one that times out.
    const single = b.execute('k1', () => 'single', { timeout: 10 })
    const multi = b.execute(['k2', 'k9', 'br{ace}s', 'odd}key'], () => 'multi', { timeout: 10 })
    const named = b.acquire('anon', { ownerId: 'o2', awaitQueue: true, timeout: 10 })
    await assert.rejects(b.execute('k1', () => 'never', { timeout: 1 }), { code: 'LOCK_TIMEOUT' })
    const released = performance.now()
    assert.equal(await a.release(['k1', 'k2', 'br{ace}s', 'odd}key'], { ownerId: 'o1' }), true)
    assert.equal(await a.release('anon'), true)
    assert.deepEqual(await Promise.all([single, multi, named.then(() => 'named')]), ['single', 'multi', 'named'])
    assert.ok(performance.now() - released < 2000, 'the waiters got their keys promptly')

    // An owner holding more than its index keeps (127 keys) is found by scanning.
    const many = Array.from({ length: 130 }, (_, i) => `m${i}`)
    await a.acquire(many, { ownerId: 'big', expire: 30 })
    assert.equal((await a.listLocks({ ownerId: 'big' })).length, 130)
    await a.releaseAll({ ownerId: 'big' })
    assert.deepEqual(await a.listLocks({ ownerId: 'big' }), [])

    await a.acquire(['r1', 'r2'], { ownerId: 'o1', expire: 30 })
    await a.acquire('r3')
    assert.equal((await a.listLocks()).length, 4)
    assert.equal((await a.listLocks({ ownerId: 'o1' })).length, 2)
    await a.releaseAll({ ownerId: 'o1' })
    await a.releaseAll()
    await b.releaseAll({ ownerId: 'o2' })
    assert.equal(await plain.cli('--scan', '--pattern', 'medusa_lock:*'), '')

    assert.equal(await plain.cli('acl', 'log'), '', 'no command or key was denied')
    assert.deepEqual(logs, [], 'no warning (e.g. a failed wake-up subscription)')
  })

  test(`${aclName} is restrictive: the user cannot touch keys or channels outside the namespace`, async () => {
    assert.ok(rules(), 'the README documents an ACL')
    await plain.cli('acl', 'setuser', 'locker', 'reset', 'on', '>lockerPass1', ...rules())
    cleanup.push(() => plain.cli('acl', 'deluser', 'locker'))
    await plain.cli('set', 'outside', 'value')
    cleanup.push(() => plain.cli('del', 'outside'))
    const raw = new Redis({ port: plain.port, host: '127.0.0.1', username: 'locker', password: 'lockerPass1', lazyConnect: true, maxRetriesPerRequest: 0 })
    await raw.connect()
    cleanup.push(() => raw.disconnect())
    const denied = /NOPERM/
    await assert.rejects(raw.get('outside'), denied)
    await assert.rejects(raw.set('outside', 'mine'), denied)
    await assert.rejects(raw.del('outside'), denied)
    await assert.rejects(raw.set('ferrolock:f:other:', '1'), denied)
    await assert.rejects(raw.publish('other-channel', 'x'), denied)
    await assert.rejects(raw.call('flushall'), denied)
    await assert.rejects(raw.call('eval', "return redis.call('GET', KEYS[1])", '1', 'outside'), denied)
    await assert.rejects(raw.call('config', 'get', 'requirepass'), denied)
    // Through ferrolock, another namespace is out of reach.
    const other = await connect({ redisUrl: `redis://locker:lockerPass1@127.0.0.1:${plain.port}`, namespace: 'other:' })
    await assert.rejects(other.acquire('k'), (error) => {
      assert.equal(error.code, 'REDIS_ERROR')
      assert.match(error.message, /NOPERM|permission/i)
      return true
    })
    assert.equal(await plain.cli('get', 'outside'), 'value')
  })
}

test('a wrong password fails connect() with REDIS_ERROR saying authentication failed, via the URL or redisOptions', async () => {
  const guarded = await startRedis({ args: ['--requirepass', 'rightPass1'] })
  cleanup.push(() => guarded.stop())
  await guarded.cli('-a', 'rightPass1', '--no-auth-warning', 'acl', 'setuser', 'alice', 'on', '>alicePass1', '~*', '&*', '+@all')
  const host = `127.0.0.1:${guarded.port}`
  const cases = {
    'wrong password in the URL': { redisUrl: `redis://:wrongPass1@${host}` },
    'wrong password in redisOptions': { redisUrl: `redis://${host}`, redisOptions: { password: 'wrongPass2' } },
    'wrong user password in the URL': { redisUrl: `redis://alice:wrongPass3@${host}` },
    'wrong user password in redisOptions': { redisUrl: `redis://${host}`, redisOptions: { username: 'alice', password: 'wrongPass4' } },
    'unknown user': { redisUrl: `redis://${host}`, redisOptions: { username: 'mallory', password: 'wrongPass5' } },
  }
  for (const [name, options] of Object.entries(cases)) {
    const outcome = await timed(LockingModuleService.connect(options))
    assert.equal(outcome.error?.code, 'REDIS_ERROR', `${name}: ${outcome.error?.message ?? 'connected'}`)
    assert.match(outcome.error.message, /WRONGPASS|auth/i, name)
    assert.doesNotMatch(outcome.error.message, /wrongPass/, name)
    assert.ok(outcome.ms <= 5000 + SLACK_MS, `${name}: ${Math.round(outcome.ms)} ms`)
  }
  const missing = await timed(LockingModuleService.connect({ redisUrl: `redis://${host}` }))
  assert.equal(missing.error?.code, 'REDIS_ERROR', 'no password')
  assert.match(missing.error.message, /NOAUTH|auth/i)
  // The right ones work, both ways.
  for (const options of [
    { redisUrl: `redis://:rightPass1@${host}` },
    { redisUrl: `redis://${host}`, redisOptions: { username: 'alice', password: 'alicePass1' } },
  ]) {
    const locks = await connect(options)
    await locks.acquire('k', { ownerId: 'me' })
    assert.equal(await locks.release('k', { ownerId: 'me' }), true)
  }
})

test('no password appears in any error, stack, inspect output, warning or log line, whatever fails', async () => {
  const guarded = await startRedis({ args: ['--requirepass', 'pwRight020'] })
  cleanup.push(() => guarded.stop())
  await guarded.cli('-a', 'pwRight020', '--no-auth-warning', 'acl', 'setuser', 'locker', 'on', '>pwLockerRight021', '~*', '&*', '+@all')
  const cfg = { authPort: guarded.port, tlsPort: secured.port, otherCaPem: certs.pem.otherCa, freePort: await freePort() }
  const { stdout, stderr } = await new Promise((resolve, reject) => {
    execFile(process.execPath, [SECRETS_WORKER, JSON.stringify(cfg)], { timeout: 60_000, maxBuffer: 64 * 1024 * 1024 }, (error, out, err) =>
      error ? reject(new Error(`${error.message}\n${err}`)) : resolve({ stdout: out, stderr: err }),
    )
  })
  const report = JSON.parse(stdout.trim().split('\n').pop())
  // Each failure mode really happened.
  for (const [name, outcome] of Object.entries(report.outcomes)) {
    if (name.startsWith('connected')) assert.equal(outcome, 'ok', `${name}: ${outcome}`)
    else if (name.startsWith('malformed')) assert.equal(outcome, 'INVALID_ARGUMENT', name)
    else if (name.startsWith('lazy')) assert.equal(outcome, 'DONE', name)
    else assert.equal(outcome, 'REDIS_ERROR', `${name}: ${outcome}`)
  }
  assert.ok(report.logLines.length > 0, 'debug logging produced lines')
  assert.ok(report.warnings.some((w) => /ignoring unsupported option/.test(w)), 'the ignored-option warning was emitted')
  const everything = [stdout, stderr].join('\n')
  const leaks = [...new Set(everything.match(/pw[A-Za-z]+0\d\d/g) ?? [])]
  const where = leaks.map((secret) => {
    const at = everything.indexOf(secret)
    return `${secret}: …${everything.slice(Math.max(0, at - 120), at + 40)}…`
  })
  assert.deepEqual(where, [], 'passwords found in what a user can see')
})

test('keys with newlines, unicode, emoji and glob characters work and stay exactly inside the namespace', async () => {
  const raw = new Redis({ port: plain.port, host: '127.0.0.1', lazyConnect: true })
  await raw.connect()
  cleanup.push(() => raw.disconnect())
  const ns = 'sec?[*]\\:'
  const keys = ['line\nbreak', 'crlf\r\nkey', 'tab\tkey', 'ünïcödé', '日本語のキー', '🔒💥👩‍👩‍👧', '*', '?', '[a-z]', '\\', 'a*b?c[d]e\\f', ' ', '{brace}', '}odd{']
  // Neighbours: keys outside the namespace that an unescaped glob of it would match.
  const neighbours = ['secX[*]\\:k', 'sec?[*]\\', 'sec?*]\\:k', 'secY*\\:k', 'sec?[*]:k', 'other:*', '*']
  for (const key of neighbours) await raw.set(key, '*')
  cleanup.push(() => raw.del(...neighbours))

  const locks = await connect({ redisUrl: plain.url, namespace: ns })
  await locks.acquire(keys, { ownerId: 'me', expire: 60 })
  for (const key of keys) {
    const exact = Buffer.from(ns + key, 'utf8')
    assert.equal(await raw.exists(exact), 1, `Redis has exactly ${JSON.stringify(ns + key)}`)
    assert.equal(await raw.get(exact), 'me')
  }
  await assert.rejects(locks.acquire(keys[5], { ownerId: 'other' }), { message: `Failed to acquire lock for key "${keys[5]}"` })
  const listed = (await locks.listLocks({ ownerId: 'me' })).map((lock) => lock.key).sort()
  assert.deepEqual(listed, [...keys].sort(), 'listLocks gives the keys back as given')

  await locks.releaseAll({ ownerId: 'me' })
  for (const key of keys) assert.equal(await raw.exists(Buffer.from(ns + key)), 0, JSON.stringify(key))
  const tokens = await locks.execute(keys, async (signal, grant) => {
    for (const key of keys) assert.equal(await raw.get(Buffer.from(ns + key)), grant.ownerId, JSON.stringify(key))
    return grant.fencingTokens
  })
  assert.deepEqual(Object.keys(tokens).sort(), [...keys].sort(), 'fencing tokens by key, as given')
  await locks.acquire(keys)
  await locks.releaseAll()
  for (const key of keys) assert.equal(await raw.exists(Buffer.from(ns + key)), 0, JSON.stringify(key))
  for (const key of neighbours) assert.equal(await raw.get(key), '*', `neighbour ${JSON.stringify(key)} untouched`)
  await locks.acquire(keys, { ownerId: 'me' })
  assert.equal(await locks.release(keys, { ownerId: 'me' }), true)
  for (const key of neighbours) assert.equal(await raw.get(key), '*', `neighbour ${JSON.stringify(key)} untouched`)
})

test('a key with a NUL byte works or is rejected up front: never a crash, a hang or a lock left behind', async () => {
  // In a child process: an uncaught exception there cannot take the test runner down.
  const script = `
    const { LockingModuleService } = require(${JSON.stringify(path.join(__dirname, '..'))})
    const outcomes = {}
    process.on('uncaughtException', (error) => { outcomes.uncaught = error.message })
    const settle = (name, promise) => new Promise((resolve) => {
      const timer = setTimeout(() => resolve((outcomes[name] = 'pending after 3 s')), 3000)
      promise
        .then(() => 'ok', (error) => error.code + ': ' + error.message)
        .then((outcome) => {
          if (outcomes[name] === undefined) outcomes[name] = outcome
          clearTimeout(timer)
          resolve()
        })
    })
    ;(async () => {
      const locks = await LockingModuleService.connect({ redisUrl: ${JSON.stringify(plain.url)}, namespace: 'nul:' })
      await settle('acquire', locks.acquire('a\\u0000b', { ownerId: 'me', expire: 30 }))
      await settle('release', locks.release('a\\u0000b', { ownerId: 'me' }))
      await settle('execute', locks.execute('x\\u0000y', () => 'ran', { expire: 30 }))
      await settle('acquire (second key)', locks.acquire(['ok', 'c\\u0000d'], { ownerId: 'me', expire: 30 }))
      await locks.releaseAll({ ownerId: 'me' })
      await locks.close()
      process.stdout.write(JSON.stringify(outcomes))
    })()
  `
  const stdout = await new Promise((resolve, reject) => {
    execFile(process.execPath, ['-e', script], { timeout: 30_000 }, (error, out, err) => (error ? reject(new Error(`${error.message}\n${err}`)) : resolve(out)))
  })
  const outcomes = JSON.parse(stdout)
  const problems = []
  if (outcomes.uncaught !== undefined) problems.push(`an uncaught exception: ${outcomes.uncaught}`)
  for (const name of ['acquire', 'release', 'execute', 'acquire (second key)']) {
    if (outcomes[name] !== 'ok' && !outcomes[name].startsWith('INVALID_ARGUMENT')) problems.push(`${name}: ${outcomes[name]}`)
  }
  // Whatever the choice, nothing stays locked (releaseAll covered the named owner; execute releases itself).
  const left = await plain.cli('--scan', '--pattern', 'nul:*')
  if (left !== '') problems.push(`locks left behind: ${JSON.stringify(left)}`)
  assert.deepEqual(problems, [])
})

test('the maximum key length (1024 bytes) is documented and enforced: exactly the maximum works, one byte more is rejected', async () => {
  const readme = fs.readFileSync(path.join(__dirname, '..', 'README.md'), 'utf8')
  assert.match(readme, /key is at most \*{0,2}1024 bytes/, 'README documents the limit')
  const locks = await connect({ redisUrl: plain.url, namespace: 'max:' })
  const longest = {
    ascii: 'k'.repeat(MAX_KEY_BYTES),
    emoji: '🔒'.repeat(MAX_KEY_BYTES / 4),
    mixed: 'é'.repeat((MAX_KEY_BYTES - 2) / 2) + 'ab',
  }
  const tooLong = {
    ascii: 'k'.repeat(MAX_KEY_BYTES + 1),
    emoji: '🔒'.repeat(MAX_KEY_BYTES / 4) + 'k',
    'multi-byte character crossing the limit': 'k'.repeat(MAX_KEY_BYTES - 1) + 'é',
  }
  for (const [name, key] of Object.entries(longest)) {
    assert.equal(Buffer.byteLength(key), MAX_KEY_BYTES, name)
    await locks.acquire(key, { ownerId: 'me' })
    assert.equal(await plain.cli('exists', `max:${key}`), '1', name)
    assert.equal(await locks.release([key], { ownerId: 'me' }), true, name)
    assert.equal(await locks.execute(key, () => name), name)
  }
  const before = await plain.cli('info', 'commandstats')
  for (const [name, key] of Object.entries(tooLong)) {
    const invalid = (error) => {
      assert.equal(error.code, 'INVALID_ARGUMENT', name)
      assert.match(error.message, /keys/, name)
      return true
    }
    await assert.rejects(locks.acquire(key), invalid)
    await assert.rejects(locks.acquire(['ok', key]), invalid)
    await assert.rejects(locks.release(key), invalid)
    await assert.rejects(locks.execute(key, () => 'ran'), invalid)
  }
  const calls = (stats) => (stats.match(/cmdstat_(evalsha|eval|set|del|get)\b:calls=\d+/g) ?? []).join()
  assert.equal(calls(await plain.cli('info', 'commandstats')), calls(before), 'nothing reached Redis')
})
