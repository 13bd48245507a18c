'use strict'
// Child process for scale-out.test.js: `callers` loops of execute(key, job)
// against a cluster or sentinel deployment while the test fails a master
// over. Jobs log enter/exit to a separate standalone Redis (never failed
// over), so the parent can check exclusion among the jobs whose lease was
// not reported lost.
// argv[2]: JSON { lockOptions, logUrl, logKey, key, callers, iterations, maxJobMs }

const Redis = require('ioredis')
const { LockingModuleService } = require('../..')

const cfg = JSON.parse(process.argv[2])
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

async function main() {
  const log = new Redis(cfg.logUrl)
  const locks = await LockingModuleService.connect(cfg.lockOptions)
  process.send({ ready: true })
  await new Promise((resolve) => process.once('message', resolve))

  let completed = 0
  let lastCompletedAt = 0
  const lost = []
  const failures = {}
  async function caller(c) {
    for (let i = 0; i < cfg.iterations; i++) {
      const id = `${process.pid}:${c}:${i}`
      let signalAborted = false
      try {
        await locks.execute(cfg.key, async (signal) => {
          await log.rpush(cfg.logKey, `enter:${id}`)
          await sleep(Math.floor(Math.random() * (cfg.maxJobMs + 1)))
          signalAborted = signal.aborted
          await log.rpush(cfg.logKey, `exit:${id}`)
        }, { timeout: 20, expire: 2 })
        if (signalAborted) {
          lost.push(id)
        } else {
          completed++
          lastCompletedAt = Date.now()
        }
      } catch (error) {
        if (error.code === 'LOCK_LOST' || signalAborted) lost.push(id)
        else failures[error.code ?? error.message] = (failures[error.code ?? error.message] ?? 0) + 1
      }
    }
  }
  await Promise.all(Array.from({ length: cfg.callers }, (_, c) => caller(c)))
  await locks.close()
  await log.quit()
  process.send({ completed, lost, failures, lastCompletedAt }, () => process.disconnect())
}

main().catch((error) => {
  console.error(error)
  process.exit(1)
})
