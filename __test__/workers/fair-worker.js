'use strict'
// Child process for fairness.test.js: waits for the hot key with `execute`,
// `rounds` times in a row, logging `<name>-r<round>` to a Redis list outside
// the lock namespace at the start of each job.
// argv[2]: JSON { url, name, rounds, logKey }

const Redis = require('ioredis')
const { LockingModuleService } = require('../..')

const cfg = JSON.parse(process.argv[2])
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

async function main() {
  const log = new Redis(cfg.url)
  const locks = await LockingModuleService.connect({ redisUrl: cfg.url })
  for (let round = 0; round < cfg.rounds; round++) {
    await locks.execute('fair', async () => {
      await log.rpush(cfg.logKey, `${cfg.name}-r${round}`)
      await sleep(20)
    }, { timeout: 30 })
  }
  await locks.close()
  log.disconnect()
}

main().catch((error) => {
  console.error(error)
  process.exit(1)
})
