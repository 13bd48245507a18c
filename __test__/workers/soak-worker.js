'use strict'
// Child process for soak.test.js: `callers` concurrent loops, each doing
// `iterations` x execute() on one or two random keys of a small hot set,
// with a random 0–maxJobMs job. Every job logs `enter:<id>` on entry and
// `exit:<id>` before returning, with RPUSH on the list of each of its keys
// in a *separate* Redis (the lock Redis is killed mid-run and would lose
// the log). MULTI makes a two-key job's entries atomic across its lists.
//
// argv[2]: JSON { lockUrl, logUrl, namespace, keys, callers, iterations, maxJobMs, timeout, expire }
// Run by scripts/workers.js runWorkers(); reports
// { calls, completed, outcomes: { [id]: code }, lost: [id], unexpected: [message], ms }.

const Redis = require('ioredis')
const { LockingModuleService } = require('../..')

const cfg = JSON.parse(process.argv[2])
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))
const EXPECTED_FAILURES = new Set(['LOCK_LOST', 'LOCK_TIMEOUT', 'REDIS_ERROR'])

function pickKeys() {
  const first = cfg.keys[Math.floor(Math.random() * cfg.keys.length)]
  if (Math.random() < 0.8) return [first]
  let second
  do second = cfg.keys[Math.floor(Math.random() * cfg.keys.length)]
  while (second === first)
  return [first, second]
}

function logEntry(log, keys, entry) {
  if (keys.length === 1) return log.rpush(`soak:log:${keys[0]}`, entry)
  const multi = log.multi()
  for (const key of keys) multi.rpush(`soak:log:${key}`, entry)
  return multi.exec()
}

async function main() {
  const log = new Redis(cfg.logUrl, { lazyConnect: true })
  await log.connect()
  const locks = await LockingModuleService.connect({ redisUrl: cfg.lockUrl, namespace: cfg.namespace })

  process.send({ ready: true })
  await new Promise((resolve) => process.once('message', resolve))

  let calls = 0
  let completed = 0
  const outcomes = {}
  const lost = []
  const unexpected = []
  async function caller(c) {
    for (let i = 0; i < cfg.iterations; i++) {
      const id = `${process.pid}:${c}:${i}`
      const keys = pickKeys()
      let aborted = false
      calls++
      try {
        await locks.execute(
          keys,
          async (signal) => {
            signal.addEventListener('abort', () => (aborted = true))
            await logEntry(log, keys, `enter:${id}`)
            await sleep(Math.floor(Math.random() * (cfg.maxJobMs + 1)))
            await logEntry(log, keys, `exit:${id}`)
            return id
          },
          { timeout: cfg.timeout, expire: cfg.expire },
        )
        completed++
      } catch (error) {
        const code = error.code ?? 'none'
        outcomes[id] = code
        if (!EXPECTED_FAILURES.has(code)) unexpected.push(`${id}: ${code}: ${error.message}`)
        // Redis is down: do not spin through the iterations.
        if (code === 'REDIS_ERROR') await sleep(20)
      }
      if (aborted || outcomes[id] === 'LOCK_LOST') lost.push(id)
    }
  }

  const started = Date.now()
  await Promise.all(Array.from({ length: cfg.callers }, (_, c) => caller(c)))
  const ms = Date.now() - started

  await locks.close()
  await log.quit()
  process.send({ calls, completed, outcomes, lost, unexpected, ms }, () => process.disconnect())
}

main().catch((error) => {
  console.error(error)
  process.exit(1)
})
