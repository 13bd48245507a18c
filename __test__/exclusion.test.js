'use strict'
// Mutual exclusion across processes: many callers in several Node processes
// execute() on the same key(s); a log in Redis (outside the lock namespace)
// proves no two jobs overlapped, every call completed and nothing stays locked.

const { test, before, after } = require('node:test')
const assert = require('node:assert/strict')
const path = require('node:path')
const { startRedis } = require('./helpers/redis')
const { runWorkers } = require('../scripts/workers')

const WORKER = path.join(__dirname, 'workers', 'hot-key-worker.js')

let server
before(async () => {
  server = await startRedis()
})
after(async () => {
  await server?.stop()
})

function runHotKeyWorkers(configs) {
  return runWorkers(WORKER, configs.map((cfg) => ({ url: server.url, ...cfg })))
}

/** Replays the enter/exit log; returns the first overlaps found and the number of jobs. */
function checkLog(entries) {
  const overlaps = []
  let holder = null
  let jobs = 0
  for (const entry of entries) {
    const [kind, id] = [entry.slice(0, entry.indexOf(':')), entry.slice(entry.indexOf(':') + 1)]
    if (kind === 'enter') {
      jobs++
      if (holder !== null) overlaps.push(`${id} entered while ${holder} held the lock`)
      holder = id
    } else {
      if (holder !== id) overlaps.push(`${id} exited while ${holder} held the lock`)
      holder = null
    }
  }
  return { overlaps: overlaps.slice(0, 5), jobs }
}

async function readLog(logKey) {
  const raw = await server.cli('lrange', logKey, '0', '-1')
  return raw === '' ? [] : raw.split('\n')
}

test('one hot key, 4 processes x 4 callers x 50 executes: no overlap, all complete', { timeout: 120_000 }, async (t) => {
  const processes = 4
  const callers = 4
  const iterations = 50
  const logKey = 'excl:log:hot'
  // A generous timeout: this test is about exclusion, not fairness under load.
  const cfg = { keys: 'hot', callers, iterations, maxJobMs: 3, logKey, timeout: 60 }

  const { reports, ms } = await runHotKeyWorkers(Array.from({ length: processes }, () => cfg))
  t.diagnostic(`${processes * callers * iterations} executes in ${ms} ms`)

  assert.deepEqual(reports.flatMap((r) => r.errors), [])
  assert.equal(reports.reduce((n, r) => n + r.completed, 0), processes * callers * iterations)
  const { overlaps, jobs } = checkLog(await readLog(logKey))
  assert.deepEqual(overlaps, [])
  assert.equal(jobs, processes * callers * iterations)
  assert.equal(await server.cli('keys', 'medusa_lock:*'), '')
})

test('ABBA: ["a","b"] vs ["b","a"] from two processes completes without timeout', { timeout: 120_000 }, async (t) => {
  const callers = 2 // two per process: a lock that takes keys one by one deadlocks reliably
  const iterations = 200
  const logKey = 'excl:log:abba'
  // Default timeout (waitLockingTimeout, 5 s): a deadlock shows up as LOCK_TIMEOUT.
  const { reports, ms } = await runHotKeyWorkers([
    { keys: ['a', 'b'], callers, iterations, maxJobMs: 1, logKey },
    { keys: ['b', 'a'], callers, iterations, maxJobMs: 1, logKey },
  ])
  t.diagnostic(`${2 * callers * iterations} executes in ${ms} ms`)

  assert.deepEqual(reports.flatMap((r) => r.errors), [])
  assert.deepEqual(reports.map((r) => r.completed), [callers * iterations, callers * iterations])
  const { overlaps, jobs } = checkLog(await readLog(logKey))
  assert.deepEqual(overlaps, [])
  assert.equal(jobs, 2 * callers * iterations)
  assert.equal(await server.cli('keys', 'medusa_lock:*'), '')
})
