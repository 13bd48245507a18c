'use strict'
// Child process for exclusion.test.js: `callers` concurrent loops, each doing
// `iterations` x execute(keys, job). Every job logs enter/exit with RPUSH on a
// plain connection, so the parent can check that no two jobs ever overlapped.
//
// argv[2]: JSON { url, keys, callers, iterations, maxJobMs, logKey, timeout?, tokenKey? }
// With `tokenKey`, each job also RPUSHes its fencing token of keys[0] there.
// Run by scripts/workers.js runWorkers(); reports { completed, errors, ms }.

const Redis = require('ioredis')
const { LockingModuleService } = require('../..')

const cfg = JSON.parse(process.argv[2])
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

async function main() {
  const log = new Redis(cfg.url, { lazyConnect: true })
  await log.connect()
  const locks = await LockingModuleService.connect({ redisUrl: cfg.url })
  const executeOptions = cfg.timeout === undefined ? undefined : { timeout: cfg.timeout }

  process.send({ ready: true })
  await new Promise((resolve) => process.once('message', resolve))

  let completed = 0
  let insideHere = 0 // overlaps within this process, caught without Redis
  const errors = []
  async function caller(c) {
    for (let i = 0; i < cfg.iterations; i++) {
      const id = `${process.pid}:${c}:${i}`
      try {
        const result = await locks.execute(
          cfg.keys,
          async (signal, grant) => {
            if (++insideHere !== 1) errors.push({ message: `local overlap at ${id}` })
            await log.rpush(cfg.logKey, `enter:${id}`)
            if (cfg.tokenKey) await log.rpush(cfg.tokenKey, String(grant.fencingTokens[cfg.keys[0]]))
            await sleep(Math.floor(Math.random() * (cfg.maxJobMs + 1)))
            await log.rpush(cfg.logKey, `exit:${id}`)
            insideHere--
            return id
          },
          executeOptions,
        )
        if (result !== id) errors.push({ message: `execute returned ${result} for ${id}` })
        else completed++
      } catch (err) {
        errors.push({ code: err.code, message: err.message })
      }
    }
  }

  const started = Date.now()
  await Promise.all(Array.from({ length: cfg.callers }, (_, c) => caller(c)))
  const ms = Date.now() - started

  await locks.close()
  await log.quit()
  // Exit on our own: a handle left open by close() shows as a worker that hangs.
  process.send({ completed, errors, ms }, () => process.disconnect())
}

main().catch((err) => {
  console.error(err)
  process.exit(1)
})
