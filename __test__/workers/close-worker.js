'use strict'
// Child process for faults.test.js: calls in flight — waiting for a held key,
// running a job, stuck behind a stalled proxy — when close() is called. It
// prints one JSON line per event on stdout and must then exit by itself:
// nothing here calls process.exit, so a handle left open shows as a hang.
//
// argv[2]: JSON { proxyUrl, directUrl, namespace }
// IPC: sends 'stall-me', waits for 'stalled', then disconnects.

const { performance } = require('node:perf_hooks')
const { LockingModuleService } = require('../..')

const cfg = JSON.parse(process.argv[2])
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))
const print = (event) => process.stdout.write(`${JSON.stringify(event)}\n`)

async function main() {
  const holder = await LockingModuleService.connect({ redisUrl: cfg.directUrl, namespace: cfg.namespace })
  await holder.acquire('held', { ownerId: 'holder' })
  await holder.close()

  // Long timeouts: only close() can settle these calls promptly.
  const locks = await LockingModuleService.connect({
    redisUrl: cfg.proxyUrl,
    namespace: cfg.namespace,
    redisOptions: { connectTimeout: 30_000, commandTimeout: 30_000 },
  })
  let closedAt = null
  const calls = []
  const track = (name, promise) => {
    calls.push(
      promise.then(
        (value) => print({ event: 'settled', name, afterCloseMs: closedAt === null ? null : performance.now() - closedAt, outcome: 'resolved', value: String(value) }),
        (error) => print({ event: 'settled', name, afterCloseMs: closedAt === null ? null : performance.now() - closedAt, outcome: error.code ?? error.message }),
      ),
    )
  }

  track('acquire awaitQueue, waiting', locks.acquire('held', { ownerId: 'waiter', awaitQueue: true, timeout: 60 }))
  track('execute, waiting', locks.execute('held', () => 'ran', { timeout: 60 }))
  track(
    'execute, job running',
    locks.execute('free', (signal) => new Promise((resolve) => signal.addEventListener('abort', () => resolve('aborted')))),
  )
  await sleep(300)

  process.send('stall-me')
  await new Promise((resolve) => process.once('message', resolve))
  process.disconnect()

  track('acquire, stalled', locks.acquire('x'))
  track('acquire awaitQueue, stalled', locks.acquire('y', { awaitQueue: true, timeout: 60 }))
  track('release, stalled', locks.release('held', { ownerId: 'holder' }))
  track('releaseAll, stalled', locks.releaseAll())
  track('execute, stalled', locks.execute('z', () => 'ran', { timeout: 60 }))
  await sleep(500)

  closedAt = performance.now()
  print({ event: 'closing' })
  await locks.close()
  track('acquire after close', locks.acquire('after'))
  await Promise.all(calls)
  print({ event: 'all-settled', afterCloseMs: performance.now() - closedAt })
}

main().catch((error) => {
  print({ event: 'error', message: error.stack })
  process.exitCode = 1
})
