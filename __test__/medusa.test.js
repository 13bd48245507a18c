'use strict'
// The Medusa ModuleProvider, loaded by Medusa's own loader: `MedusaApp` from
// @medusajs/framework/modules-sdk with the @medusajs/locking module, against a
// real redis-server. Medusa resolves a provider's `resolve` from process.cwd(),
// so the tests run inside a temp project whose node_modules links `ferrolock`
// to this package (as `npm link` or a `file:` install would) and `@medusajs`
// to ours: `resolve: "ferrolock"` then goes through Node's real resolution.

const { test, before, after } = require('node:test')
const assert = require('node:assert/strict')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const { spawn } = require('node:child_process')
const { MedusaApp, MedusaModule } = require('@medusajs/framework/modules-sdk')
const { Modules } = require('@medusajs/framework/utils')
const { createStep, createWorkflow, StepResponse, WorkflowResponse } = require('@medusajs/framework/workflows-sdk')
const medusaRedisLocking = require('@medusajs/locking-redis').default
const { FerrolockLockingProvider, MISSING_REDIS_URL_MESSAGE } = require('../medusa.js')
const { startRedis, freePort } = require('./helpers/redis')

const ROOT = path.join(__dirname, '..')
const WORKER = path.join(__dirname, 'workers', 'medusa-app-worker.js')
const CONNECTED = 'Connection to Redis in "locking-redis" provider established'
// Stands in for `@medusajs/medusa/link-modules` (not installed): MedusaApp
// otherwise tries to require it and logs a warning. Links play no part in locking.
const linkModulesStub = { initialize: async () => ({}), getMigrationPlanner: () => undefined }

let redis
let project
let originalCwd
let nameSeq = 0

/** A CLIENT SETNAME per app, to count that app's connections on the server. */
function clientName() {
  nameSeq += 1
  return `ferrolock-medusa-${process.pid}-${nameSeq}`
}

async function connectionsNamed(name) {
  const list = await redis.cli('client', 'list')
  return list.split('\n').filter((line) => line.includes(` name=${name} `)).length
}

async function eventually(check, { timeoutMs = 3000, what = 'condition' } = {}) {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    if (await check()) return
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 25))
  }
}

function captureLogger() {
  const lines = []
  const record = (level) => (message) => lines.push({ level, message: String(message) })
  const logger = { info: record('info'), warn: record('warn'), error: record('error'), log: record('info'), debug() {} }
  const messages = (level) => lines.filter((line) => line.level === level).map((line) => line.message)
  return { lines, logger, messages }
}

/** Boots the locking module with one provider, `redis-lock`, as the default. */
function bootLocking({ resolve = 'ferrolock', options, moduleOptions = {}, logger = captureLogger().logger }) {
  return MedusaApp({
    cwd: project,
    modulesConfig: {
      [Modules.LINK]: linkModulesStub,
      [Modules.LOCKING]: {
        resolve: '@medusajs/locking',
        options: { ...moduleOptions, providers: [{ resolve, id: 'redis-lock', is_default: true, options }] },
      },
    },
    injectedDependencies: { logger },
  })
}

async function shutdown(app) {
  await app.onApplicationPrepareShutdown()
  await app.onApplicationShutdown()
  // MedusaModule caches module instances process-wide, keyed by their config.
  MedusaModule.clearInstances()
}

/**
 * Boots the app in a child process (see the worker) and resolves to
 * `{ exitCode, report, stderr }`; a child still running after 20 s is killed.
 */
async function runWorker(cfg) {
  const child = spawn(process.execPath, [WORKER, JSON.stringify(cfg)], { cwd: project, stdio: ['ignore', 'pipe', 'pipe'] })
  let stdout = ''
  let stderr = ''
  child.stdout.on('data', (chunk) => (stdout += chunk))
  child.stderr.on('data', (chunk) => (stderr += chunk))
  const exitCode = await new Promise((resolve) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL')
      resolve('still running after 20 s')
    }, 20_000)
    child.once('exit', (code, signal) => {
      clearTimeout(timer)
      resolve(code ?? signal)
    })
  })
  let report
  try {
    report = JSON.parse(stdout.trim())
  } catch {
    report = { unparsed: stdout }
  }
  return { exitCode, report, stderr }
}

/** The provider instance Medusa built for `id`, found the way the locking module finds it. */
function providerOf(app, id = 'redis-lock') {
  return app.modules[Modules.LOCKING].providerService_.retrieveProviderRegistration(id)
}

before(async () => {
  redis = await startRedis()
  project = fs.mkdtempSync(path.join(os.tmpdir(), 'ferrolock-medusa-project-'))
  fs.mkdirSync(path.join(project, 'node_modules'))
  fs.symlinkSync(ROOT, path.join(project, 'node_modules', 'ferrolock'), 'dir')
  fs.symlinkSync(path.join(ROOT, 'node_modules', '@medusajs'), path.join(project, 'node_modules', '@medusajs'), 'dir')
  originalCwd = process.cwd()
  process.chdir(project)
})

after(async () => {
  if (originalCwd) process.chdir(originalCwd)
  if (project) fs.rmSync(project, { recursive: true, force: true })
  await redis?.stop()
})

for (const resolve of ['ferrolock', 'ferrolock/medusa']) {
  test(`resolve: "${resolve}" — Medusa builds our provider, which connects, logs once and locks`, async () => {
    const { logger, messages } = captureLogger()
    const name = clientName()
    const app = await bootLocking({ resolve, logger, options: { redisUrl: redis.url, redisOptions: { connectionName: name } } })
    try {
      assert.deepEqual(messages('info').filter((m) => m === CONNECTED), [CONNECTED])
      assert.deepEqual(messages('warn'), [])
      assert.deepEqual(messages('error'), [])

      const provider = providerOf(app)
      assert.ok(provider instanceof FerrolockLockingProvider)
      assert.equal(provider.constructor.identifier, 'locking-redis')
      assert.ok((await connectionsNamed(name)) >= 1, 'the loader connected')

      const locking = app.modules[Modules.LOCKING]
      await locking.acquire('cart_1', { ownerId: 'owner-a', expire: 20 })
      await locking.acquire('cart_2', { provider: 'redis-lock' })
      assert.equal(await redis.cli('get', 'medusa_lock:cart_1'), 'owner-a')
      assert.equal(await redis.cli('get', 'medusa_lock:cart_2'), '*')
      const ttl = Number(await redis.cli('pttl', 'medusa_lock:cart_1'))
      assert.ok(ttl > 15_000 && ttl <= 20_000, `PTTL ${ttl}`)
      assert.equal(await redis.cli('pttl', 'medusa_lock:cart_2'), '-1')
      await assert.rejects(locking.acquire('cart_1', { ownerId: 'owner-b' }), { message: 'Failed to acquire lock for key "cart_1"' })
      assert.equal(await locking.release('cart_1', { ownerId: 'owner-a', provider: 'redis-lock' }), true)
      assert.equal(await locking.release('cart_2'), true)
      assert.equal(await redis.cli('exists', 'medusa_lock:cart_1', 'medusa_lock:cart_2'), '0')

      // Medusa's docs say `lp_locking-redis`; its locking module prefixes `lp_` itself.
      await assert.rejects(locking.acquire('cart_3', { provider: 'lp_locking-redis' }), /Unable to retrieve the locking provider/)

      await provider.shutdown()
      await provider.shutdown()
      await eventually(async () => (await connectionsNamed(name)) === 0, { what: 'the connection to close' })
      await assert.rejects(locking.acquire('cart_4'), { code: 'CLOSED' })
    } finally {
      await shutdown(app)
    }
  })
}

test("a missing redisUrl fails the boot with @medusajs/locking-redis's message", async () => {
  // Medusa's own loader throws before touching Redis: its message is the reference.
  const medusaMessage = await medusaRedisLocking.loaders[0]({ container: {}, logger: captureLogger().logger, options: {} }).then(
    () => assert.fail('Medusa loader accepted a missing redisUrl'),
    (error) => error.message,
  )
  assert.equal(
    medusaMessage,
    'No "redisUrl" provided in "locking" module, "locking-redis" provider options. It is required for the "locking-redis" Module provider.',
  )
  assert.equal(MISSING_REDIS_URL_MESSAGE, medusaMessage)

  for (const options of [{}, { redisUrl: '' }, { namespace: 'x:' }]) {
    const { exitCode, report, stderr } = await runWorker({ options })
    assert.equal(exitCode, 0, stderr)
    assert.ok(report.error?.includes(medusaMessage), JSON.stringify(report))
  }
  // Built without the loader, the provider checks its own options the same way.
  assert.throws(() => new FerrolockLockingProvider({}, {}), { message: medusaMessage })
})

test("provider-level options take effect under Medusa's loader (waitLockingTimeout, namespace)", async () => {
  const ns = 'shop_a:'
  const app = await bootLocking({
    options: { redisUrl: redis.url, namespace: ns, waitLockingTimeout: 1 },
    // What Medusa 2.21.2 hands to the provider's constructor; it must not win.
    moduleOptions: { waitLockingTimeout: 10 },
  })
  try {
    const locking = app.modules[Modules.LOCKING]
    await redis.cli('set', `${ns}busy`, 'someone-else')
    let ran = false
    const started = Date.now()
    await assert.rejects(
      locking.execute('busy', async () => {
        ran = true
      }),
      { message: 'Timed-out acquiring lock.', code: 'LOCK_TIMEOUT', type: 'conflict' },
    )
    const waitedMs = Date.now() - started
    assert.ok(waitedMs >= 900 && waitedMs < 4000, `waited ${waitedMs} ms, not the 1 s of the provider's waitLockingTimeout`)
    assert.equal(ran, false)
    assert.equal(await redis.cli('get', `${ns}busy`), 'someone-else')

    await locking.acquire('free')
    assert.equal(await redis.cli('get', `${ns}free`), '*')
    assert.equal(await redis.cli('exists', 'medusa_lock:free'), '0')
  } finally {
    await redis.cli('del', `${ns}busy`, `${ns}free`)
    await shutdown(app)
  }
})

// Defined once: workflow ids are global to the process.
const lockingStep = createStep('ferrolock-test-locking-step', async (input, { container }) => {
  const locking = container.resolve(Modules.LOCKING)
  const key = (name) => `medusa_lock:${name}`
  const seen = {}
  seen.jobResult = await locking.execute(input.executeKey, async (signal) => {
    seen.ownerDuringJob = await redis.cli('get', key(input.executeKey))
    seen.ttlDuringJob = Number(await redis.cli('pttl', key(input.executeKey)))
    seen.signalAborted = signal.aborted
    return `ran ${input.executeKey}`
  })
  seen.executeKeyAfterJob = await redis.cli('exists', key(input.executeKey))

  await locking.acquire(input.ownedKey, { provider: 'redis-lock', ownerId: input.ownerId, expire: 30 })
  seen.ownedValue = await redis.cli('get', key(input.ownedKey))
  seen.ownedReleased = await locking.release(input.ownedKey, { provider: 'redis-lock', ownerId: input.ownerId })

  await locking.acquire(input.defaultKey)
  seen.defaultValue = await redis.cli('get', key(input.defaultKey))
  seen.defaultReleased = await locking.release(input.defaultKey)
  seen.leftover = await redis.cli('exists', key(input.ownedKey), key(input.defaultKey))
  return new StepResponse(seen)
})
const lockingWorkflow = createWorkflow('ferrolock-test-locking-workflow', (input) => new WorkflowResponse(lockingStep(input)))

test('a workflow step resolves Modules.LOCKING from the container and locks through ferrolock', async () => {
  const app = await bootLocking({ options: { redisUrl: redis.url } })
  try {
    const { result } = await lockingWorkflow(app.sharedContainer).run({
      input: { executeKey: 'order_1', ownedKey: 'stock_9', defaultKey: 'cart_7', ownerId: 'wf-owner' },
    })
    assert.equal(result.jobResult, 'ran order_1')
    assert.ok(result.ownerDuringJob && result.ownerDuringJob !== '*', `execute holds the key under a fresh owner, got ${result.ownerDuringJob}`)
    assert.ok(result.ttlDuringJob > 50_000 && result.ttlDuringJob <= 60_000, `lease PTTL ${result.ttlDuringJob}`)
    assert.equal(result.signalAborted, false)
    assert.equal(result.executeKeyAfterJob, '0')
    assert.equal(result.ownedValue, 'wf-owner')
    assert.equal(result.ownedReleased, true)
    assert.equal(result.defaultValue, '*')
    assert.equal(result.defaultReleased, true)
    assert.equal(result.leftover, '0')
  } finally {
    await shutdown(app)
  }
})

test('a Redis that cannot be reached fails the boot with a logged error that hides the password', async () => {
  const port = await freePort()
  const options = { redisUrl: `redis://:hunter2@127.0.0.1:${port}`, redisOptions: { connectTimeout: 300 } }
  const { exitCode, report, stderr } = await runWorker({ options })
  assert.equal(exitCode, 0, stderr)
  assert.ok(report.error, JSON.stringify(report))
  const messages = (level) => report.lines.filter((line) => line.level === level).map((line) => line.message)
  const connectErrors = messages('error').filter((m) => m.startsWith('An error occurred while connecting to Redis in provider "locking-redis": '))
  assert.equal(connectErrors.length, 1, JSON.stringify(report.lines))
  assert.deepEqual(messages('info').filter((m) => m === CONNECTED), [])
  assert.ok(!JSON.stringify(report).includes('hunter2'), JSON.stringify(report))
})

test("unknown redisOptions keys are reported once through Medusa's logger", async () => {
  const { logger, messages } = captureLogger()
  const app = await bootLocking({
    logger,
    options: { redisUrl: redis.url, redisOptions: { lazyConnect: true, showFriendlyErrorStack: true } },
  })
  try {
    const warnings = messages('warn')
    assert.equal(warnings.length, 1, JSON.stringify(warnings))
    assert.match(warnings[0], /lazyConnect/)
    assert.match(warnings[0], /showFriendlyErrorStack/)
  } finally {
    await shutdown(app)
  }
})

test("a lost lease is logged through Medusa's logger, in @medusajs/locking-redis's words", async () => {
  const { logger, messages } = captureLogger()
  const app = await bootLocking({ logger, options: { redisUrl: redis.url, namespace: 'medusa_log:' } })
  try {
    const provider = providerOf(app)
    await assert.rejects(
      provider.execute(
        'cart_lost',
        async () => {
          await redis.cli('del', 'medusa_log:cart_lost')
          await new Promise((resolve) => setTimeout(resolve, 700))
        },
        { expire: 1 },
      ),
      { code: 'LOCK_LOST' },
    )
    const expected =
      'Lost the lock for key(s) "cart_lost" while the job was still running: the lease expired before it could be renewed. Increase "expire" if the job is expected to run this long.'
    await eventually(() => messages('warn').includes(expected), { what: `the warning in ${JSON.stringify(messages('warn'))}` })
  } finally {
    await shutdown(app)
  }
})

test('after MedusaApp shutdown the process exits by itself and its connection is gone', async () => {
  const name = clientName()
  const options = { redisUrl: redis.url, redisOptions: { connectionName: name } }
  const { exitCode, report, stderr } = await runWorker({ options, key: 'worker_key' })
  assert.equal(exitCode, 0, stderr)
  assert.equal(report.booted, true, JSON.stringify(report))
  assert.equal(report.locked, 'worker_key')
  assert.ok(report.lines.some((line) => line.level === 'info' && line.message === CONNECTED))
  assert.equal(await redis.cli('get', 'medusa_lock:worker_key'), 'worker')
  await eventually(async () => (await connectionsNamed(name)) === 0, { what: "the worker's connection to close" })
  await redis.cli('del', 'medusa_lock:worker_key')
})
