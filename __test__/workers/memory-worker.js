'use strict'
// Child process for memory.test.js (run with --expose-gc): `concurrency`
// loops of acquire + release, each on its own key, for a warm-up of `warmup`
// cycles, then `cycles` more in steps of `step`. After the warm-up and after
// every step it collects garbage (several passes, so finalizers of native
// objects run) and samples memory at once — the same conditions each time:
// no idle pause, which would let V8 shrink its heap before one sample only.
// Prints one JSON line: { samples: [{ cycles, rss, heapTotal, heapUsed, external }], ms }.
//
// argv[2]: JSON { url, warmup, cycles, step, concurrency }

const { LockingModuleService } = require('../..')

const cfg = JSON.parse(process.argv[2])

function sample(cycles) {
  for (let i = 0; i < 5; i++) global.gc()
  const { rss, heapTotal, heapUsed, external } = process.memoryUsage()
  return { cycles, rss, heapTotal, heapUsed, external }
}

async function run(locks, cycles) {
  let next = 0
  const loop = async (n) => {
    const key = `mem${n}`
    const args = { ownerId: `owner${n}`, expire: 30 }
    while (next < cycles) {
      next++
      await locks.acquire(key, args)
      if (!(await locks.release(key, args))) throw new Error(`release of ${key} returned false`)
    }
  }
  await Promise.all(Array.from({ length: cfg.concurrency }, (_, n) => loop(n)))
}

async function main() {
  const locks = await LockingModuleService.connect({ redisUrl: cfg.url, namespace: 'mem:' })
  await run(locks, cfg.warmup)
  const samples = [sample(0)]
  const started = Date.now()
  for (let done = 0; done < cfg.cycles; done += cfg.step) {
    await run(locks, Math.min(cfg.step, cfg.cycles - done))
    samples.push(sample(Math.min(done + cfg.step, cfg.cycles)))
  }
  const ms = Date.now() - started
  await locks.close()
  process.stdout.write(`${JSON.stringify({ samples, ms })}\n`)
}

main().catch((error) => {
  console.error(error)
  process.exit(1)
})
