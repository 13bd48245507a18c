'use strict'

// Fair waiting across processes: waiters get a hot key in the order they
// arrived, and a caller that just released it queues behind everyone else.

const { test, before, after } = require('node:test')
const assert = require('node:assert/strict')
const path = require('node:path')
const { spawn } = require('node:child_process')
const { LockingModuleService } = require('..')
const { startRedis } = require('./helpers/redis')

let redis

before(async () => {
  redis = await startRedis()
})

after(async () => {
  await redis?.stop()
})

function startWorker(config) {
  const child = spawn(process.execPath, [path.join(__dirname, 'workers', 'fair-worker.js'), JSON.stringify(config)], {
    stdio: ['ignore', 'inherit', 'inherit'],
  })
  const exited = new Promise((resolve, reject) => {
    child.once('error', reject)
    child.once('exit', (code) => (code === 0 ? resolve() : reject(new Error(`${config.name} exited with ${code}`))))
  })
  return { child, exited }
}

async function waitFor(condition, what) {
  const deadline = Date.now() + 10_000
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 10))
  }
}

test('4 processes get a released key in arrival order, and a releaser waits its turn', async () => {
  const locks = await LockingModuleService.connect({ redisUrl: redis.url })
  await locks.acquire('fair', { ownerId: 'holder' })
  const queue = 'ferrolock:q:{medusa_lock:fair}'
  const workers = []
  for (let index = 0; index < 4; index++) {
    workers.push(startWorker({ url: redis.url, name: `p${index}`, rounds: 2, logKey: 'fair:order' }))
    // The next process starts only once this one is queued: arrival order is known.
    await waitFor(async () => Number(await redis.cli('zcard', queue)) === index + 1, `p${index} to queue`)
  }
  assert.equal(await locks.release('fair', { ownerId: 'holder' }), true)
  await Promise.all(workers.map((worker) => worker.exited))

  const order = (await redis.cli('lrange', 'fair:order', '0', '-1')).split('\n')
  assert.deepEqual(order, ['p0-r0', 'p1-r0', 'p2-r0', 'p3-r0', 'p0-r1', 'p1-r1', 'p2-r1', 'p3-r1'])
  assert.equal(await redis.cli('--scan', '--pattern', 'medusa_lock:*'), '', 'nothing left locked')
  // Only the namespace's fencing counter stays, by design.
  assert.equal(await redis.cli('--scan', '--pattern', 'ferrolock:*'), 'ferrolock:f:medusa_lock:', 'no queue left behind')
  await locks.close()
})
