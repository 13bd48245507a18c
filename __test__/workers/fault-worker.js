'use strict'
// Child process for faults.test.js: another Node process that holds, waits
// for or contends for a lock while the parent breaks things (SIGKILL, a
// partition). Times are Date.now(): one wall clock for every process of the
// machine, so the parent can compare them with its own.
//
// argv[2]: JSON { role, url, namespace, keys, expire?, timeout?, holdMs? }
// roles:
//   holder     execute(keys) with a job that never ends; sends { holding, ownerId }
//   waiter     execute(keys) on keys held by someone else; sends { waiting } once queued
//   contender  on 'go', execute(keys) and hold them holdMs; sends { entered },
//              then { done: { enteredAt, exitedAt, outcome, aborted } } and exits

const { LockingModuleService } = require('../..')

const cfg = JSON.parse(process.argv[2])
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

async function main() {
  const locks = await LockingModuleService.connect({ redisUrl: cfg.url, namespace: cfg.namespace })
  const executeArgs = { expire: cfg.expire, timeout: cfg.timeout }

  if (cfg.role === 'holder') {
    await locks.execute(
      cfg.keys,
      (signal, grant) => {
        process.send({ holding: true, ownerId: grant.ownerId })
        // Runs until the process is killed; the lease is renewed meanwhile.
        return new Promise(() => {})
      },
      executeArgs,
    )
    return
  }

  if (cfg.role === 'waiter') {
    const waiting = locks.execute(cfg.keys, () => 'got it', executeArgs)
    waiting.catch(() => {})
    await sleep(200)
    process.send({ waiting: true })
    await waiting
    return
  }

  if (cfg.role === 'contender') {
    process.send({ ready: true })
    await new Promise((resolve) => process.once('message', resolve))
    let enteredAt = null
    let exitedAt = null
    let aborted = false
    let outcome
    try {
      await locks.execute(
        cfg.keys,
        async (signal) => {
          enteredAt = Date.now()
          process.send({ entered: enteredAt })
          await sleep(cfg.holdMs ?? 0)
          aborted = signal.aborted
          exitedAt = Date.now()
        },
        executeArgs,
      )
      outcome = 'completed'
    } catch (error) {
      outcome = error.code ?? error.message
    }
    await locks.close()
    process.send({ done: { enteredAt, exitedAt, outcome, aborted } }, () => process.disconnect())
    return
  }

  throw new Error(`unknown role ${cfg.role}`)
}

main().catch((error) => {
  console.error(error)
  process.exit(1)
})
