'use strict'
// `npx ferrolock` (bin/ferrolock.js), spawned as a shell user runs it, against
// throwaway redis-server processes.

const { test, before, after } = require('node:test')
const assert = require('node:assert/strict')
const { spawn } = require('node:child_process')
const net = require('node:net')
const path = require('node:path')
const { LockingModuleService } = require('..')
const { startRedis, freePort } = require('./helpers/redis')
const { startCluster } = require('../scripts/redis-topologies')
const { makeCerts } = require('../scripts/certs')

const CLI = path.join(__dirname, '..', 'bin', 'ferrolock.js')
const { version } = require('../package.json')
const URL_ENV_VARS = ['FERROLOCK_REDIS_URL', 'LOCKING_REDIS_URL', 'REDIS_URL']

let redis
let namespaceSeq = 0
const services = []

/** A fresh namespace per test, so tests never see each other's locks. */
function namespace() {
  namespaceSeq += 1
  return `cli${namespaceSeq}:`
}

async function connect(ns) {
  const service = await LockingModuleService.connect({ redisUrl: redis.url, namespace: ns })
  services.push(service)
  return service
}

/**
 * Runs the CLI and resolves to `{ code, stdout, stderr, ms }`. The Redis URL
 * variables of this process never leak in (nothing may reach the Redis on
 * 6379); `env` adds some. A CLI still running after `timeoutMs` is killed and
 * fails the test: it must exit by itself.
 */
function cli(args, { env = {}, timeoutMs = 15_000, direct = false } = {}) {
  const childEnv = { ...process.env }
  for (const name of URL_ENV_VARS) delete childEnv[name]
  Object.assign(childEnv, env)
  const [command, argv] = direct ? [CLI, args] : [process.execPath, [CLI, ...args]]
  return new Promise((resolve, reject) => {
    const started = Date.now()
    const child = spawn(command, argv, { env: childEnv, stdio: ['ignore', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (chunk) => (stdout += chunk))
    child.stderr.on('data', (chunk) => (stderr += chunk))
    const timer = setTimeout(() => {
      child.kill('SIGKILL')
      reject(new Error(`ferrolock ${args.join(' ')} still running after ${timeoutMs} ms\nstdout: ${stdout}\nstderr: ${stderr}`))
    }, timeoutMs)
    child.on('error', reject)
    child.on('close', (code, signal) => {
      clearTimeout(timer)
      resolve({ code: code ?? signal, stdout, stderr, ms: Date.now() - started })
    })
  })
}

/** `locks --json` on the test server, parsed. */
async function listed(ns, ...args) {
  const run = await cli(['locks', '--url', redis.url, '--namespace', ns, '--json', ...args])
  assert.equal(run.code, 0, run.stderr)
  assert.equal(run.stderr, '')
  return JSON.parse(run.stdout)
}

/** Rows of the text table, split on the column gaps. */
function tableRows(stdout) {
  const lines = stdout.trimEnd().split('\n')
  assert.match(lines[0], /^KEY\s+OWNER\s+TTL\s+WAITERS$/)
  return lines.slice(1).map((line) => line.trim().split(/\s{2,}/))
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

/** Waits until `count` callers are queued for `lockKey` (ferrolock:q:{<lock key>}, see the README). */
async function waitForWaiters(lockKey, count) {
  const deadline = Date.now() + 5000
  while (Number(await redis.cli('zcard', `ferrolock:q:{${lockKey}}`)) < count) {
    if (Date.now() > deadline) throw new Error(`${count} waiters never queued for ${lockKey}`)
    await sleep(20)
  }
}

/** A URL on which nothing listens. */
async function deadUrl(password = 'hunter2-secret') {
  return `redis://:${password}@127.0.0.1:${await freePort()}`
}

before(async () => {
  redis = await startRedis()
})

after(async () => {
  for (const service of services) await service.close()
  await redis?.stop()
})

test('--help and --version exit 0, globally and per command', async () => {
  const global = await cli(['--help'])
  assert.equal(global.code, 0)
  assert.equal(global.stderr, '')
  assert.match(global.stdout, /^Usage: ferrolock <command>/)
  for (const text of ['locks', 'release <key...>', '--url <redis-url>', '--tls-ca <file>', '--cluster', '--namespace <prefix>', '--json', 'FERROLOCK_REDIS_URL', 'Exit codes']) {
    assert.ok(global.stdout.includes(text), `global help mentions ${text}`)
  }
  assert.equal((await cli(['-h'])).stdout, global.stdout)
  assert.equal((await cli(['help'])).stdout, global.stdout)

  for (const [args, usage] of [
    [['locks', '--help'], 'Usage: ferrolock locks'],
    [['help', 'locks'], 'Usage: ferrolock locks'],
    [['release', '-h'], 'Usage: ferrolock release <key...>'],
    [['help', 'release'], 'Usage: ferrolock release <key...>'],
    [['locks', '--bogus', '--help'], 'Usage: ferrolock locks'],
  ]) {
    const run = await cli(args)
    assert.equal(run.code, 0, args.join(' '))
    assert.equal(run.stderr, '')
    assert.ok(run.stdout.startsWith(usage), `${args.join(' ')}: ${run.stdout}`)
  }
  assert.match((await cli(['locks', '--help'])).stdout, /--owner <id>[\s\S]*--pattern <glob>[\s\S]*--limit <n>/)
  assert.match((await cli(['release', '--help'])).stdout, /--owner <id>/)

  // Run as a shell runs it: the shebang and the executable bit.
  for (const flag of ['--version', '-v']) {
    const run = await cli([flag], { direct: true })
    assert.deepEqual([run.code, run.stdout, run.stderr], [0, `${version}\n`, ''])
  }
})

test('usage errors exit 2 with a one-line hint to --help on stderr, before touching Redis', async () => {
  // Nothing listens on this URL: a CLI that tried to connect would exit 1, not 2.
  const url = await deadUrl()
  const cases = [
    [[], /missing command/, 'ferrolock --help'],
    [['bogus'], /unknown command 'bogus'/, 'ferrolock --help'],
    [['toString'], /unknown command 'toString'/, 'ferrolock --help'],
    [['redis://:hunter2-secret@example.com', 'locks'], /unknown command 'redis:\/\/:\*\*\*@example.com'/, 'ferrolock --help'],
    [['locks', 'redis://:hunter2-secret@example.com'], /'locks' takes no arguments, got 'redis:\/\/:\*\*\*@example.com'/, 'ferrolock locks --help'],
    [['help', 'bogus'], /unknown command 'bogus'/, 'ferrolock --help'],
    [['locks', '--bogus'], /unknown option '--bogus'/, 'ferrolock locks --help'],
    [['locks', '-x'], /unknown option '-x'/, 'ferrolock locks --help'],
    [['locks', '--json=yes'], /option '--json' takes no value/, 'ferrolock locks --help'],
    [['locks', 'cart_1'], /'locks' takes no arguments/, 'ferrolock locks --help'],
    [['locks', '--limit', 'ten'], /'--limit' must be a whole number from 1 to 100000/, 'ferrolock locks --help'],
    [['locks', '--limit', '0'], /'--limit' must be a whole number/, 'ferrolock locks --help'],
    [['locks', '--limit', '100001'], /'--limit' must be a whole number/, 'ferrolock locks --help'],
    [['locks', '--pattern', ''], /'--pattern' must not be empty/, 'ferrolock locks --help'],
    [['release'], /'release' needs at least one key/, 'ferrolock release --help'],
    [['release', 'k', '--pattern', 'c*'], /option '--pattern' is not valid for 'release'/, 'ferrolock release --help'],
    [['release', 'k', '--limit', '5'], /option '--limit' is not valid for 'release'/, 'ferrolock release --help'],
    [['release', 'k', '--owner'], /option '--owner' needs a value/, 'ferrolock release --help'],
    [['release', 'k', '--force'], /unknown option '--force'/, 'ferrolock release --help'],
  ]
  for (const [args, message, hint] of cases) {
    const run = await cli([...args, '--url', url])
    const what = `ferrolock ${args.join(' ')}`
    assert.equal(run.code, 2, `${what}: exit ${run.code}, ${run.stderr}`)
    assert.equal(run.stdout, '', what)
    const lines = run.stderr.trimEnd().split('\n')
    assert.equal(lines.length, 2, `${what}: ${run.stderr}`)
    assert.match(lines[0], /^ferrolock: /)
    assert.match(lines[0], message, what)
    assert.equal(lines[1], `Run '${hint}' for usage.`, what)
    assert.ok(!run.stderr.includes('hunter2'), `${what}: no password in ${run.stderr}`)
  }

  // A value that needs a value: --url alone.
  const noUrl = await cli(['locks', '--url'])
  assert.equal(noUrl.code, 2)
  assert.match(noUrl.stderr, /option '--url' needs a value/)

  // A URL that is not a Redis URL is a usage error too, named by where it came from, never echoed.
  for (const [args, env, source] of [
    [['locks', '--url', 'http://:hunter2-secret@example.com'], {}, '--url'],
    [['locks'], { REDIS_URL: 'redis://:hunter2-secret@bad host:port' }, '$REDIS_URL'],
  ]) {
    const run = await cli(args, { env })
    assert.equal(run.code, 2, run.stderr)
    assert.ok(run.stderr.startsWith(`ferrolock: ${source} is not a valid Redis URL`), run.stderr)
    assert.ok(!run.stderr.includes('hunter2'), run.stderr)
  }
})

test('locks lists owner, TTL and waiters of the locks a service holds, as a table and as JSON', async () => {
  const ns = namespace()
  const holder = await connect(ns)
  const other = await connect(ns)
  await holder.acquire('cart_1', { ownerId: 'worker-7', expire: 30 })
  await holder.acquire('cart_2')
  await holder.acquire('stock_9', { ownerId: 'worker-8', expire: 3600 })
  // Two callers queue for cart_1: an acquire with awaitQueue and an execute.
  const waiting = other.acquire('cart_1', { ownerId: 'waiter', awaitQueue: true, timeout: 30 })
  let ran = false
  const executing = other.execute('cart_1', () => { ran = true }, { timeout: 30 })
  await waitForWaiters(`${ns}cart_1`, 2)

  const locks = await listed(ns)
  assert.deepEqual(locks.map((lock) => lock.key), ['cart_1', 'cart_2', 'stock_9'])
  const [cart1, cart2, stock9] = locks
  assert.deepEqual(Object.keys(cart1).sort(), ['key', 'ownerId', 'ttlMs', 'waiters'])
  assert.equal(cart1.ownerId, 'worker-7')
  assert.ok(cart1.ttlMs > 20_000 && cart1.ttlMs <= 30_000, `ttlMs ${cart1.ttlMs}`)
  assert.equal(cart1.waiters, 2)
  assert.deepEqual(cart2, { key: 'cart_2', ownerId: null, ttlMs: null, waiters: 0 })
  assert.equal(stock9.ownerId, 'worker-8')
  assert.ok(stock9.ttlMs > 3_500_000 && stock9.ttlMs <= 3_600_000, `ttlMs ${stock9.ttlMs}`)
  assert.equal(stock9.waiters, 0)

  const table = await cli(['locks', '--namespace', ns], { env: { FERROLOCK_REDIS_URL: redis.url } })
  assert.equal(table.code, 0, table.stderr)
  assert.equal(table.stderr, '')
  const rows = tableRows(table.stdout)
  assert.equal(rows.length, 3, table.stdout)
  assert.deepEqual(rows[0].filter((_, i) => i !== 2), ['cart_1', 'worker-7', '2'])
  assert.match(rows[0][2], /^(2\d|30)\.\ds$/, 'TTL in seconds')
  assert.deepEqual(rows[1], ['cart_2', '*', 'no expiry', '0'])
  assert.deepEqual(rows[2].filter((_, i) => i !== 2), ['stock_9', 'worker-8', '0'])
  assert.match(rows[2][2], /^(59m\d\ds|1h00m)$/, 'TTL in minutes')

  assert.equal(ran, false, 'the execute is still waiting')
  assert.equal(await holder.release('cart_1', { ownerId: 'worker-7' }), true)
  await waiting
  assert.equal(await other.release('cart_1', { ownerId: 'waiter' }), true)
  await executing
  assert.equal(ran, true)
  await holder.releaseAll()
  await holder.releaseAll({ ownerId: 'worker-8' })
})

test('locks filters by owner and pattern, in the namespace given, up to --limit', async () => {
  const ns = namespace()
  const service = await connect(ns)
  await service.acquire(['cart_1', 'stock_1'], { ownerId: 'worker-7', expire: 60 })
  await service.acquire('cart_2', { ownerId: 'worker-8', expire: 60 })
  await service.acquire('cart_3')
  await service.acquire('order[1]', { ownerId: 'worker-7', expire: 60 })
  const keys = (locks) => locks.map((lock) => lock.key)

  assert.deepEqual(keys(await listed(ns)), ['cart_1', 'cart_2', 'cart_3', 'order[1]', 'stock_1'])
  assert.deepEqual(keys(await listed(ns, '--pattern', 'cart_*')), ['cart_1', 'cart_2', 'cart_3'])
  assert.deepEqual(keys(await listed(ns, '--pattern', 'order\\[*')), ['order[1]'])
  assert.deepEqual(keys(await listed(ns, '--owner', 'worker-7')), ['cart_1', 'order[1]', 'stock_1'])
  assert.deepEqual(keys(await listed(ns, '--owner', 'worker-7', '--pattern', 'cart_*')), ['cart_1'])
  assert.deepEqual(keys(await listed(ns, '--owner', '*')), ['cart_3'], '"*": locks taken without owner')
  assert.deepEqual(await listed(ns, '--owner', 'nobody'), [])
  assert.deepEqual(await listed(`${ns}other:`), [], 'another namespace')

  const none = await cli(['locks', '--url', redis.url, '--namespace', ns, '--pattern', 'refund_*'])
  assert.equal(none.code, 0, 'an empty list is not an error')
  assert.equal(none.stdout, `No locks matching 'refund_*' in namespace "${ns}".\n`)

  const limited = await cli(['locks', '--url', redis.url, '--namespace', ns, '--limit', '2'])
  assert.equal(limited.code, 0, limited.stderr)
  assert.equal(tableRows(limited.stdout).length, 2)
  assert.match(limited.stderr, /^ferrolock: showing the first 2 locks; there may be more \(raise --limit\)\n$/)

  // Without --namespace: Medusa's default, medusa_lock:.
  const medusa = await connect(undefined)
  await medusa.acquire('default_ns_key', { ownerId: 'medusa-owner', expire: 60 })
  const defaults = await cli(['locks', '--json'], { env: { LOCKING_REDIS_URL: redis.url } })
  assert.equal(defaults.code, 0, defaults.stderr)
  assert.deepEqual(keys(JSON.parse(defaults.stdout)), ['default_ns_key'])
  await medusa.release('default_ns_key', { ownerId: 'medusa-owner' })
})

test('release with the right owner frees the lock; with the wrong owner it exits 1 and keeps it', async () => {
  const ns = namespace()
  const service = await connect(ns)
  await service.acquire('cart_1', { ownerId: 'worker-7', expire: 30 })
  const base = ['--url', redis.url, '--namespace', ns]

  const wrong = await cli(['release', 'cart_1', '--owner', 'worker-9', ...base])
  assert.equal(wrong.code, 1)
  assert.equal(wrong.stdout, '')
  assert.equal(wrong.stderr, 'ferrolock: "cart_1" not released: held by "worker-7", not by "worker-9"\n')
  assert.equal(await redis.cli('get', `${ns}cart_1`), 'worker-7', 'the lock is kept')

  const right = await cli(['release', 'cart_1', '--owner', 'worker-7', ...base])
  assert.equal(right.code, 0, right.stderr)
  assert.equal(right.stderr, '')
  assert.match(right.stdout, /^released "cart_1" \(held by worker-7, TTL \d+\.\ds, 0 waiters queued\)\n$/)
  assert.equal(await redis.cli('exists', `${ns}cart_1`), '0')

  const again = await cli(['release', 'cart_1', '--owner', 'worker-7', ...base, '--json'])
  assert.equal(again.code, 1)
  assert.deepEqual(JSON.parse(again.stdout), [{ key: 'cart_1', released: false, reason: 'not_found' }])
  assert.equal(again.stderr, `ferrolock: "cart_1" not released: no such lock in namespace "${ns}"\n`)
})

test('release without --owner frees the lock whoever holds it, and the first waiter gets it', async () => {
  const ns = namespace()
  const holder = await connect(ns)
  const other = await connect(ns)
  await holder.acquire('cart_1', { ownerId: 'worker-7', expire: 30 })
  await holder.acquire('cart_2')
  await holder.acquire('stock_1', { ownerId: 'worker-8' })
  const waiting = other.acquire('cart_1', { ownerId: 'waiter', awaitQueue: true, timeout: 30 })
  await waitForWaiters(`${ns}cart_1`, 1)
  const base = ['--url', redis.url, '--namespace', ns]

  const run = await cli(['release', 'cart_1', 'cart_2', ...base])
  assert.equal(run.code, 0, run.stderr)
  assert.equal(run.stderr, '')
  const lines = run.stdout.trimEnd().split('\n')
  assert.equal(lines.length, 2, run.stdout)
  assert.match(lines[0], /^released "cart_1" \(held by worker-7, TTL \d+\.\ds, 1 waiter queued\)$/)
  assert.equal(lines[1], 'released "cart_2" (held by *, TTL no expiry, 0 waiters queued)')
  await waiting
  assert.equal(await redis.cli('get', `${ns}cart_1`), 'waiter', 'handed to the waiter')
  assert.equal(await redis.cli('exists', `${ns}cart_2`), '0')

  // JSON, and a missing key among found ones: the found one is released, exit 1.
  const mixed = await cli(['release', 'stock_1', 'missing', ...base, '--json'])
  assert.equal(mixed.code, 1)
  assert.deepEqual(JSON.parse(mixed.stdout), [
    { key: 'stock_1', ownerId: 'worker-8', ttlMs: null, waiters: 0, released: true },
    { key: 'missing', released: false, reason: 'not_found' },
  ])
  assert.equal(mixed.stderr, `ferrolock: "missing" not released: no such lock in namespace "${ns}"\n`)
  assert.equal(await redis.cli('exists', `${ns}stock_1`), '0')

  // A key with glob characters is released exactly, not as a pattern.
  await holder.acquire(['order[1]', 'order1'], { ownerId: 'worker-7' })
  const exact = await cli(['release', 'order[1]', ...base])
  assert.equal(exact.code, 0, exact.stderr)
  assert.equal(await redis.cli('exists', `${ns}order[1]`), '0')
  assert.equal(await redis.cli('get', `${ns}order1`), 'worker-7')
  await other.release('cart_1', { ownerId: 'waiter' })
  await holder.release('order1', { ownerId: 'worker-7' })
})

test('an unreachable Redis exits 1 within a few seconds, with a clear message and no password', async () => {
  for (const args of [['locks'], ['release', 'cart_1'], ['release', 'cart_1', '--owner', 'w']]) {
    const url = await deadUrl('hunter2-secret')
    const run = await cli([...args, '--url', url])
    assert.equal(run.code, 1, run.stderr)
    assert.equal(run.stdout, '')
    assert.match(run.stderr, /^ferrolock: cannot connect to Redis at redis:\/\/:\*\*\*@127\.0\.0\.1:\d+: Redis error: .*refused/i)
    assert.ok(!run.stderr.includes('hunter2'), run.stderr)
    assert.ok(run.ms < 5000, `exited after ${run.ms} ms`)
  }

  // From the environment, with a percent-encoded password: neither form shows.
  const fromEnv = await cli(['locks'], { env: { REDIS_URL: await deadUrl('p%40ss-w0rd') } })
  assert.equal(fromEnv.code, 1)
  assert.ok(!fromEnv.stderr.includes('p%40ss') && !fromEnv.stderr.includes('p@ss'), fromEnv.stderr)

  // A wrong password, and a server that accepts TCP but never answers.
  const secured = await startRedis({ args: ['--requirepass', 'right-pass'] })
  const sockets = []
  const blackhole = net.createServer((socket) => sockets.push(socket)).listen(0, '127.0.0.1')
  await new Promise((resolve) => blackhole.once('listening', resolve))
  try {
    const wrong = await cli(['locks', '--url', `redis://:wrong-pass@127.0.0.1:${secured.port}`])
    assert.equal(wrong.code, 1)
    assert.match(wrong.stderr, /^ferrolock: cannot connect to Redis at redis:\/\/:\*\*\*@127\.0\.0\.1:\d+: /)
    assert.ok(!wrong.stderr.includes('wrong-pass') && !wrong.stderr.includes('right-pass'), wrong.stderr)
    const right = await cli(['locks', '--url', `redis://:right-pass@127.0.0.1:${secured.port}`])
    assert.equal(right.code, 0, right.stderr)

    const silent = await cli(['locks', '--url', `redis://:hunter2-secret@127.0.0.1:${blackhole.address().port}`])
    assert.equal(silent.code, 1)
    assert.match(silent.stderr, /^ferrolock: cannot connect to Redis at redis:\/\/:\*\*\*@127\.0\.0\.1:\d+: Redis error: /)
    assert.ok(!silent.stderr.includes('hunter2'), silent.stderr)
    assert.ok(silent.ms < 9000, `exited after ${silent.ms} ms (connect timeout 5 s)`)
  } finally {
    sockets.forEach((socket) => socket.destroy())
    blackhole.close()
    await secured.stop()
  }
})

test('the URL comes from --url, then FERROLOCK_REDIS_URL, LOCKING_REDIS_URL, REDIS_URL', async () => {
  const ns = namespace()
  const service = await connect(ns)
  await service.acquire('env_key', { ownerId: 'env-owner', expire: 60 })
  const dead = await deadUrl()
  for (const [env, args, expected] of [
    [{ FERROLOCK_REDIS_URL: redis.url, LOCKING_REDIS_URL: dead, REDIS_URL: dead }, [], 0],
    [{ LOCKING_REDIS_URL: redis.url, REDIS_URL: dead }, [], 0],
    [{ REDIS_URL: redis.url }, [], 0],
    [{ FERROLOCK_REDIS_URL: dead, LOCKING_REDIS_URL: redis.url, REDIS_URL: redis.url }, [], 1],
    [{ FERROLOCK_REDIS_URL: '', LOCKING_REDIS_URL: redis.url }, [], 0], // empty = unset
    [{ FERROLOCK_REDIS_URL: dead }, ['--url', redis.url], 0],
  ]) {
    const run = await cli(['locks', '--namespace', ns, '--json', ...args], { env })
    assert.equal(run.code, expected, `${JSON.stringify(env)} ${args.join(' ')}: ${run.stderr}`)
    if (expected === 0) assert.deepEqual(JSON.parse(run.stdout).map((lock) => lock.ownerId), ['env-owner'])
  }
  await service.release('env_key', { ownerId: 'env-owner' })
})

/** A CA and a server certificate it signed, for 127.0.0.1; null when openssl is missing. */
test('rediss:// URLs pass through to TLS; --tls-ca trusts a private CA', async () => {
  const certs = makeCerts()
  let secure
  try {
    secure = await startRedis({ tls: { cert: certs.files.server, key: certs.files.serverKey, ca: certs.files.ca } })
    await secure.cli('set', 'medusa_lock:tls_key', 'tls-owner')
    const url = `rediss://:hunter2-secret@127.0.0.1:${secure.port}`
    await secure.cli('config', 'set', 'requirepass', 'hunter2-secret')

    const untrusted = await cli(['locks', '--url', url])
    assert.equal(untrusted.code, 1)
    assert.match(untrusted.stderr, /^ferrolock: cannot connect to Redis at rediss:\/\/:\*\*\*@127\.0\.0\.1:\d+: Redis error: .*certificate/i)
    assert.ok(!untrusted.stderr.includes('hunter2'), untrusted.stderr)

    const trusted = await cli(['locks', '--url', url, '--tls-ca', certs.files.ca, '--json'])
    assert.equal(trusted.code, 0, trusted.stderr)
    assert.deepEqual(JSON.parse(trusted.stdout), [{ key: 'tls_key', ownerId: 'tls-owner', ttlMs: null, waiters: 0 }])

    const released = await cli(['release', 'tls_key', '--url', url, '--tls-ca', certs.files.ca])
    assert.equal(released.code, 0, released.stderr)
    assert.equal(await secure.cli('-a', 'hunter2-secret', '--no-auth-warning', 'exists', 'medusa_lock:tls_key'), '0')

    const missing = await cli(['locks', '--url', url, '--tls-ca', path.join(certs.dir, 'nope.pem')])
    assert.equal(missing.code, 1)
    assert.match(missing.stderr, /^ferrolock: cannot read --tls-ca ".*nope\.pem": ENOENT\n$/)
  } finally {
    await secure?.stop()
    certs.remove()
  }
})

test('--cluster reads and releases locks on every master of a Redis Cluster', async () => {
  const cluster = await startCluster()
  try {
    const service = await LockingModuleService.connect({ clusterNodes: cluster.urls, namespace: 'shop:' })
    // Keys spread over the slots of all three masters.
    const keys = Array.from({ length: 12 }, (_, i) => `cart_${i}`)
    await service.acquire(keys, { ownerId: 'worker-7', expire: 60 })
    await service.close()
    const seed = ['--url', cluster.urls[0], '--namespace', 'shop:']

    const single = await cli(['locks', ...seed])
    assert.equal(single.code, 1, 'a single-node client cannot list a cluster')
    assert.match(single.stderr, /; a Redis Cluster\? add --cluster\n$/)

    const listedRun = await cli(['locks', '--cluster', ...seed, '--json'])
    assert.equal(listedRun.code, 0, listedRun.stderr)
    const locks = JSON.parse(listedRun.stdout)
    assert.deepEqual(locks.map((lock) => lock.key), [...keys].sort())
    assert.ok(locks.every((lock) => lock.ownerId === 'worker-7' && lock.ttlMs > 50_000))

    const released = await cli(['release', 'cart_1', 'cart_2', 'cart_3', '--cluster', ...seed])
    assert.equal(released.code, 0, released.stderr)
    assert.equal(released.stdout.trimEnd().split('\n').length, 3)
    const left = JSON.parse((await cli(['locks', '--cluster', ...seed, '--json', '--owner', 'worker-7'])).stdout)
    assert.deepEqual(left.map((lock) => lock.key), keys.filter((key) => !['cart_1', 'cart_2', 'cart_3'].includes(key)).sort())
  } finally {
    await cluster.stop()
  }
})
