'use strict'
// One shop instance for scripts/demo.js: `buyers` concurrent loops try to buy
// one item each `attempts` times in all: read the stock, wait for the
// simulated latency, write stock - 1. With `locked`, each purchase runs inside
// ferrolock's execute('stock:<sku>').
//
// After each attempt it counts it (and a sale) in the hash `progressKey`,
// outside the lock, which scripts/demo.js polls to show progress.
//
// argv[2]: JSON { url, locked, namespace, stockKey, progressKey, sku, attempts, buyers }
// Run by scripts/workers.js runWorkers(); reports { sold, soldOut, errors }.

const Redis = require('ioredis')
const { LockingModuleService } = require('..')

const cfg = JSON.parse(process.argv[2])
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

async function main() {
  const redis = new Redis(cfg.url, { lazyConnect: true })
  await redis.connect()
  const locks = cfg.locked ? await LockingModuleService.connect({ redisUrl: cfg.url, namespace: cfg.namespace }) : null

  let sold = 0
  let soldOut = 0
  const errors = []
  async function purchase() {
    const stock = Number(await redis.get(cfg.stockKey))
    await sleep(1 + Math.round(Math.random())) // payment, inventory service...
    if (stock > 0) {
      await redis.set(cfg.stockKey, stock - 1)
      sold++
      return true
    }
    soldOut++
    return false
  }

  process.send({ ready: true })
  await new Promise((resolve) => process.once('message', resolve))

  let remaining = cfg.attempts
  async function buyer() {
    while (remaining-- > 0) {
      let soldOne = false
      try {
        soldOne = locks ? await locks.execute(`stock:${cfg.sku}`, purchase, { timeout: 30 }) : await purchase()
      } catch (err) {
        errors.push(`${err.code ?? ''} ${err.message}`.trim())
      }
      await redis.pipeline().hincrby(cfg.progressKey, 'attempts', 1).hincrby(cfg.progressKey, 'sold', soldOne ? 1 : 0).exec()
    }
  }
  await Promise.all(Array.from({ length: cfg.buyers }, buyer))

  await locks?.close()
  await redis.quit()
  process.send({ sold, soldOut, errors }, () => process.disconnect())
}

main().catch((err) => {
  console.error(err)
  process.exit(1)
})
