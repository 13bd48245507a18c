'use strict'

// Soak: 4 processes x 4 callers run 10,240 execute() calls with random 0–5 ms
// jobs on 6 hot keys (one or two keys per call), and the lock Redis is
// killed (kill -9) and restarted empty on the same port in the middle.
//
// How overlaps are detected, soundly across processes: each job RPUSHes
// `enter:<id>` once it is inside (awaiting the reply) and `exit:<id>` before
// it returns (awaiting it too), on one list per key, in a second Redis that
// is never restarted. Both pushes run while the job holds its keys, and one
// Redis executes commands one at a time, so each list orders the enter/exit
// events of a key as they really happened: if two jobs' logged intervals
// overlap in a list, their critical sections really overlapped. No clock is
// compared across processes. Jobs whose lease was reported lost (LOCK_LOST,
// or their signal aborted) are left out of the check, as the contract allows
// them to overlap with the next holder; every other job counts, including one
// whose release failed with REDIS_ERROR.

const { test, before, after } = require('node:test')
const assert = require('node:assert/strict')
const path = require('node:path')
const { startRedis } = require('./helpers/redis')
const { runWorkers } = require('../scripts/workers')

const WORKER = path.join(__dirname, 'workers', 'soak-worker.js')
const PROCESSES = 4
const CALLERS = 4
const ITERATIONS = 640 // 4 x 4 x 640 = 10,240 calls
const KEYS = ['hot0', 'hot1', 'hot2', 'hot3', 'hot4', 'hot5']

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

let lockRedis
let logRedis
before(async () => {
  lockRedis = await startRedis()
  logRedis = await startRedis()
})
after(async () => {
  await lockRedis?.stop()
  await logRedis?.stop()
})

async function readLog(key) {
  const raw = await logRedis.cli('lrange', `soak:log:${key}`, '0', '-1')
  return raw === '' ? [] : raw.split('\n')
}

/** Replays one key's log; returns overlaps between jobs not in `lost`, and the ids that entered. */
function replay(entries, lost) {
  const overlaps = []
  const entered = new Set()
  const inside = new Set()
  for (const entry of entries) {
    const colon = entry.indexOf(':')
    const kind = entry.slice(0, colon)
    const id = entry.slice(colon + 1)
    if (kind === 'enter') entered.add(id)
    if (lost.has(id)) continue
    if (kind === 'enter') {
      if (inside.size > 0) overlaps.push(`${id} entered while ${[...inside].join(', ')} held the key`)
      inside.add(id)
    } else {
      inside.delete(id)
    }
  }
  return { overlaps, entered }
}

test(`soak: ${PROCESSES * CALLERS * ITERATIONS} executes from ${PROCESSES} processes on ${KEYS.length} hot keys, Redis killed and restarted mid-run`, { timeout: 180_000 }, async (t) => {
  const total = PROCESSES * CALLERS * ITERATIONS
  const cfg = {
    lockUrl: lockRedis.url,
    logUrl: logRedis.url,
    namespace: 'soak:',
    keys: KEYS,
    callers: CALLERS,
    iterations: ITERATIONS,
    maxJobMs: 5,
    timeout: 5,
    expire: 10,
  }
  const running = runWorkers(WORKER, Array.from({ length: PROCESSES }, () => cfg), { timeoutMs: 170_000 })
  let finished = false
  running.then(
    () => (finished = true),
    () => (finished = true),
  )

  // Kill -9 and restart the lock Redis once about a third of the jobs ran.
  let restarted = false
  let enteredAtRestart = 0
  while (!finished) {
    const logged = await Promise.all(KEYS.map((key) => logRedis.cli('llen', `soak:log:${key}`)))
    // About 2.4 entries per job (1.2 keys, enter + exit).
    enteredAtRestart = Math.round(logged.reduce((n, l) => n + Number(l), 0) / 2.4)
    if (enteredAtRestart >= total / 3) {
      await lockRedis.restart()
      restarted = true
      break
    }
    await sleep(50)
  }
  const { reports, ms } = await running
  assert.ok(restarted, 'Redis was restarted while the workers ran')

  const counts = { completed: 0, LOCK_LOST: 0, LOCK_TIMEOUT: 0, REDIS_ERROR: 0 }
  const lost = new Set()
  const timedOut = new Set()
  for (const report of reports) {
    counts.completed += report.completed
    for (const [id, code] of Object.entries(report.outcomes)) {
      counts[code] = (counts[code] ?? 0) + 1
      if (code === 'LOCK_TIMEOUT') timedOut.add(id)
    }
    for (const id of report.lost) lost.add(id)
  }
  t.diagnostic(`${total} executes in ${ms} ms; Redis restarted after ~${enteredAtRestart} jobs`)
  t.diagnostic(`outcomes: ${JSON.stringify(counts)}; leases reported lost: ${lost.size}`)
  console.log(`soak outcomes: ${JSON.stringify(counts)}, lost leases ${lost.size}, ${ms} ms`)

  assert.deepEqual(reports.flatMap((r) => r.unexpected), [], 'only completed, LOCK_LOST, LOCK_TIMEOUT or REDIS_ERROR')
  assert.equal(reports.reduce((n, r) => n + r.calls, 0), total)
  assert.equal(Object.values(counts).reduce((a, b) => a + b, 0), total, 'every call accounted for')

  const overlaps = []
  const entered = new Set()
  for (const key of KEYS) {
    const result = replay(await readLog(key), lost)
    overlaps.push(...result.overlaps.map((o) => `${key}: ${o}`))
    for (const id of result.entered) entered.add(id)
  }
  assert.deepEqual(overlaps.slice(0, 10), [], `${overlaps.length} overlapping critical sections among kept leases`)
  assert.deepEqual([...timedOut].filter((id) => entered.has(id)), [], 'a timed-out execute ran nothing')
  assert.ok(entered.size >= counts.completed, `${entered.size} jobs entered, ${counts.completed} completed`)
  assert.ok(counts.completed >= total / 2, `most calls completed (${counts.completed})`)
  // Nothing stays locked once every caller is done.
  assert.equal(await lockRedis.cli('--scan', '--pattern', 'soak:*'), '')
})
