'use strict'
// One measurement in a fresh Node process (forked by bench/run.js with
// --expose-gc): connects one contender, runs one workload, cleans up its own
// locks, reports over IPC and exits. A fresh process per measurement keeps
// contenders from sharing a heap, timers or CPU counters (Medusa's execute
// leaves a `timeout`-long timer behind per call, for instance).
//
// argv[2]: JSON { role, contender, url, clusterNodes?, namespace, redisPids,
// redisMasterPids?, clkTck, params }. `clusterNodes` is set for the contenders
// that run on the Redis Cluster; `redisPids` are then all its nodes' pids.

const { setTimeout: sleepP } = require('node:timers/promises')
const {
  now,
  connectContender,
  probeConnection,
  scanNamespace,
  procsCpuMs,
  nodeCpuUs,
  percentile,
  scriptUs,
  sleep,
} = require('./lib/common')
const { analyzeHot } = require('./lib/hot')

const cfg = JSON.parse(process.argv[2])
const HOT_KEY = 'hot'
const OWNER = 'bench-owner'

/** The measuring connection (INFO, SCAN, GET), never the contender's. */
let probe = null

function snapshot() {
  const snap = { t: now(), cpuUs: nodeCpuUs(), redisMs: procsCpuMs(cfg.redisPids, cfg.clkTck) }
  // INFO is per node: on a cluster this would see one master of three, so it is left out there.
  if (!cfg.clusterNodes) {
    snap.scriptInfo = probe.info('commandstats')
    snap.scriptInfo.catch(() => {})
  }
  if (cfg.redisMasterPids) snap.redisMastersMs = procsCpuMs(cfg.redisMasterPids, cfg.clkTck)
  return snap
}

/** Calls `fn` at absolute time `at` (common.now() ms). */
function at(time, fn) {
  return setTimeout(fn, Math.max(0, time - now()))
}

/**
 * µs per op that Redis's one thread spent running the contender's scripts:
 * the floor of its Redis cost whatever the client, so 1e6 / this bounds the
 * ops/s any client could get from this Redis with these scripts.
 */
async function redisScriptUsPerOp(a, b, ops) {
  if (!a.scriptInfo || !ops) return null
  return ((await scriptUs(b.scriptInfo)) - (await scriptUs(a.scriptInfo))) / ops
}

function cpuPerOp(a, b, ops) {
  const out = {
    nodeCpuUsPerOp: ops ? (b.cpuUs - a.cpuUs) / ops : null,
    redisCpuUsPerOp: ops ? ((b.redisMs - a.redisMs) * 1000) / ops : null,
    nodeCpuMs: (b.cpuUs - a.cpuUs) / 1000,
    redisCpuMs: b.redisMs - a.redisMs,
  }
  // On the cluster, redisCpu* covers all its nodes (masters and replicas); this is the masters' share.
  if (a.redisMastersMs !== undefined) {
    out.redisMastersCpuUsPerOp = ops ? ((b.redisMastersMs - a.redisMastersMs) * 1000) / ops : null
    out.redisMastersCpuMs = b.redisMastersMs - a.redisMastersMs
  }
  return out
}

/**
 * Runs `op(caller, i)` in `concurrency` loops; ops that end inside the window
 * [warm, warm + window] count for throughput, ops wholly inside it give the
 * latency samples.
 */
async function timedLoops(concurrency, { warmMs, windowMs }, op) {
  const starts = []
  const ends = []
  let stop = false
  let a
  let b
  const t0 = now()
  at(t0 + warmMs, () => (a = snapshot()))
  at(t0 + warmMs + windowMs, () => {
    b = snapshot()
    stop = true
  })
  const loop = async (c) => {
    for (let i = 0; !stop; i++) {
      const s = now()
      await op(c, i)
      const e = now()
      starts.push(s)
      ends.push(e)
    }
  }
  await Promise.all(Array.from({ length: concurrency }, (_, c) => loop(c)))
  const latencies = []
  let ops = 0
  for (let i = 0; i < ends.length; i++) {
    if (ends[i] >= a.t && ends[i] <= b.t) ops++
    if (starts[i] >= a.t && ends[i] <= b.t) latencies.push((ends[i] - starts[i]) * 1000)
  }
  return {
    ops,
    opsPerSec: ops / ((b.t - a.t) / 1000),
    p50Us: percentile(latencies, 50),
    p99Us: percentile(latencies, 99),
    windowMs: b.t - a.t,
    ...cpuPerOp(a, b, ops),
    redisScriptUsPerOp: await redisScriptUsPerOp(a, b, ops),
  }
}

/** W1 / W2: acquire + release of a key never used before, per pair. */
async function pairs(lock) {
  const { concurrency } = cfg.params
  let failedReleases = 0
  const result = await timedLoops(concurrency, cfg.params, async (c, i) => {
    const key = `p${c}:${i}`
    await lock.acquire(key, { ownerId: OWNER })
    if (!(await lock.release(key, { ownerId: OWNER }))) failedReleases++
  })
  await lock.releaseAll({ ownerId: OWNER })
  return { ...result, failedReleases }
}

/** W5: execute on 10 distinct keys, drawn at random from the caller's own 62 of a 1000-key pool. */
async function multiKey(lock) {
  const { concurrency, keysPerCall, poolSize, timeoutS } = cfg.params
  const slice = Math.floor(poolSize / concurrency)
  const pools = Array.from({ length: concurrency }, (_, c) =>
    Array.from({ length: slice }, (_, j) => `k${String(c * slice + j).padStart(3, '0')}`),
  )
  let timeouts = 0
  const errors = []
  const result = await timedLoops(concurrency, cfg.params, async (c) => {
    const own = pools[c]
    for (let j = 0; j < keysPerCall; j++) {
      const r = j + Math.floor(Math.random() * (slice - j))
      ;[own[j], own[r]] = [own[r], own[j]]
    }
    try {
      await lock.execute(own.slice(0, keysPerCall), async () => {}, { timeout: timeoutS })
    } catch (err) {
      if (lock.isTimeout(err)) timeouts++
      else errors.push(String(err?.message ?? err))
    }
  })
  return { ...result, timeouts, errors: errors.length, firstError: errors[0] }
}

/** The callers of W3 (and of each W4 process): execute on the hot key until told to stop. */
function hotCallers({ callers, jobMs, timeoutS, prefix = '' }, state) {
  const jobs = []
  const timeouts = []
  const errors = []
  let inJob = 0
  let maxInJob = 0
  const job = (record) => async () => {
    record.start = now()
    inJob++
    if (inJob > maxInJob) maxInJob = inJob
    if (jobMs > 0) await sleepP(jobMs)
    inJob--
    record.end = now()
  }
  const loop = async (c) => {
    while (!state.stop) {
      const record = { c: `${prefix}${c}`, call: now(), start: undefined, end: undefined }
      try {
        await state.lock.execute(HOT_KEY, job(record), { timeout: timeoutS })
      } catch (err) {
        if (state.lock.isTimeout(err)) timeouts.push({ c: record.c, call: record.call, at: now() })
        else {
          errors.push(String(err?.message ?? err))
          await sleep(1)
        }
      }
      if (record.start !== undefined) jobs.push(record)
    }
  }
  const done = Promise.all(Array.from({ length: callers }, (_, c) => loop(c)))
  return { done, jobs, timeouts, errors, maxInJob: () => maxInJob }
}

/** W3: 16 callers in this process, execute on one hot key. */
async function hot(lock) {
  const { warmMs, windowMs } = cfg.params
  const state = { stop: false, lock }
  let a
  let b
  const t0 = now()
  at(t0 + warmMs, () => (a = snapshot()))
  at(t0 + warmMs + windowMs, () => {
    b = snapshot()
    state.stop = true
  })
  const run = hotCallers(cfg.params, state)
  await run.done
  const analysis = analyzeHot({ jobs: run.jobs, timeouts: run.timeouts, ws: a.t, we: b.t })
  return {
    ...analysis,
    ...cpuPerOp(a, b, analysis.executes),
    redisScriptUsPerOp: await redisScriptUsPerOp(a, b, analysis.executes),
    drainMs: now() - b.t,
    maxInJob: run.maxInJob(),
    errors: run.errors.length,
    firstError: run.errors[0],
  }
}

/** One of W4's processes: waits for the shared start time, runs its callers, reports raw jobs. */
async function hotProcess(lock) {
  const { procIndex } = cfg.params
  const go = await new Promise((resolve) => {
    process.on('message', (msg) => {
      if (msg.type === 'ping') process.send({ type: 'pong', t: now() })
      else if (msg.type === 'go') resolve(msg)
    })
    process.send({ type: 'ready' })
  })
  const state = { stop: false, lock }
  let a
  let b
  await sleep(go.t0 - now())
  at(go.t0 + go.warmMs, () => (a = snapshot()))
  at(go.t0 + go.warmMs + go.windowMs, () => {
    b = snapshot()
    state.stop = true
  })
  const run = hotCallers({ ...cfg.params, prefix: `${procIndex}:` }, state)
  await run.done
  return {
    jobs: run.jobs,
    timeouts: run.timeouts,
    errors: run.errors.length,
    firstError: run.errors[0],
    maxInJob: run.maxInJob(),
    windowStart: a.t,
    windowEnd: b.t,
    nodeCpuMs: (b.cpuUs - a.cpuUs) / 1000,
  }
}

function usedMemory(info) {
  return Number(/used_memory:(\d+)/.exec(info)[1])
}

function gcRss() {
  global.gc?.()
  global.gc?.()
  return process.memoryUsage().rss
}

/** W6: memory per held lock (Redis and Node) and releaseAll cost with 100k locks held. */
async function memory(lock, probe) {
  const { locks, inFlight, expireS, fewLocks } = cfg.params
  const key = (i) => `b:${String(i).padStart(6, '0')}`
  const bulkOwner = 'bulk-owner'
  const fewOwner = 'few-owner'
  const rss0 = gcRss()
  const used0 = usedMemory(await probe.info('memory'))

  let next = 0
  const t0 = now()
  await Promise.all(
    Array.from({ length: inFlight }, async () => {
      while (next < locks) {
        const i = next++
        await lock.acquire(key(i), { ownerId: bulkOwner, expire: expireS })
      }
    }),
  )
  const bulkMs = now() - t0
  const used1 = usedMemory(await probe.info('memory'))
  const rss1 = gcRss()
  const oneKeyBytes = Number(await probe.call('MEMORY', 'USAGE', `${cfg.namespace}${key(0)}`))
  const held = (await scanNamespace(probe, cfg.namespace)).length

  const fewKeys = Array.from({ length: fewLocks }, (_, i) => `f:${i}`)
  for (const k of fewKeys) await lock.acquire(k, { ownerId: fewOwner, expire: expireS })
  let t = now()
  await lock.releaseAll({ ownerId: fewOwner })
  const releaseAllFewMs = now() - t
  const fewLeft = await probe.exists(...fewKeys.map((k) => cfg.namespace + k))
  const sample = Array.from({ length: 100 }, () => cfg.namespace + key(Math.floor(Math.random() * locks)))
  const bulkStillHeld = await probe.exists(...sample)

  t = now()
  await lock.releaseAll({ ownerId: bulkOwner })
  const releaseAllBulkMs = now() - t
  const bulkLeft = (await scanNamespace(probe, cfg.namespace)).length

  const problems = []
  if (held !== locks) problems.push(`${held} keys held after acquiring ${locks}`)
  if (fewLeft !== 0) problems.push(`releaseAll left ${fewLeft} of the ${fewLocks} locks`)
  if (bulkStillHeld !== sample.length) problems.push(`releaseAll of another owner removed bulk locks`)
  if (bulkLeft !== 0) problems.push(`releaseAll of ${locks} locks left ${bulkLeft}`)
  return {
    locks,
    redisBytesPerLock: (used1 - used0) / locks,
    memoryUsageOneKey: oneKeyBytes,
    nodeRssBytesPerLock: (rss1 - rss0) / locks,
    nodeRssIncreaseMB: (rss1 - rss0) / 2 ** 20,
    bulkAcquirePerSec: locks / (bulkMs / 1000),
    releaseAllFewMs,
    releaseAllBulkMs,
    problems,
  }
}

/**
 * Correctness before timing: 16 concurrent executes on a hot key with a 1 ms
 * job must never overlap (in-job counter, timestamps), the key must be held
 * in Redis with a TTL while the job runs, acquire must exclude another owner,
 * and nothing may be left locked afterwards.
 */
async function precheck(lock, probe) {
  const { callers, perCaller } = cfg.params
  const redisKey = cfg.namespace + HOT_KEY
  const problems = []
  let inJob = 0
  let maxInJob = 0
  let notHeld = 0
  let noTtl = 0
  let completed = 0
  let failures = 0
  const jobs = []
  await Promise.all(
    Array.from({ length: callers }, async (_, c) => {
      for (let i = 0; i < perCaller; i++) {
        const record = { c, call: now() }
        try {
          await lock.execute(
            HOT_KEY,
            async () => {
              record.start = now()
              inJob++
              maxInJob = Math.max(maxInJob, inJob)
              const [holder, pttl] = await Promise.all([probe.get(redisKey), probe.pttl(redisKey)])
              if (!holder) notHeld++
              if (!(pttl > 0)) noTtl++
              await sleepP(1)
              inJob--
              record.end = now()
            },
            { timeout: 30 },
          )
          completed++
          jobs.push(record)
        } catch (err) {
          failures++
          if (failures === 1) problems.push(`execute failed: ${err?.message ?? err}`)
        }
      }
    }),
  )
  const { overlaps } = analyzeHot({ jobs, ws: 0, we: Infinity })
  if (maxInJob !== 1) problems.push(`${maxInJob} jobs ran at once on one key`)
  if (overlaps) problems.push(`${overlaps} overlapping critical sections`)
  if (notHeld) problems.push(`${notHeld} jobs ran while the key was not in Redis`)
  if (noTtl) problems.push(`${noTtl} jobs ran while the key had no TTL`)
  if (completed !== callers * perCaller) problems.push(`${completed}/${callers * perCaller} executes completed`)

  await lock.acquire(['x', 'y'], { ownerId: 'owner-1' })
  let excluded = false
  try {
    await lock.acquire('x', { ownerId: 'owner-2' })
  } catch {
    excluded = true
  }
  if (!excluded) problems.push('acquire by a second owner did not fail')
  if ((await probe.get(cfg.namespace + 'x')) !== 'owner-1') problems.push('acquire did not store the owner under <namespace><key>')
  if (!(await lock.release(['x', 'y'], { ownerId: 'owner-1' }))) problems.push('release returned false')
  await lock.releaseAll({ ownerId: 'owner-2' })

  const left = await scanNamespace(probe, cfg.namespace)
  if (left.length) problems.push(`${left.length} keys left locked: ${left.slice(0, 3).join(', ')}`)
  return { ok: problems.length === 0, problems, executes: completed, maxInJob }
}

/**
 * The floors under ferrolock's figures, measured on this machine and Redis:
 * one JS -> Rust -> JS crossing (a call that settles in the addon without
 * Redis: `acquire([])`, rejected as INVALID_ARGUMENT), busy and after 1 ms
 * idle as between W3's jobs; and a round trip of PING from this Node
 * process over a raw socket after 1 ms idle.
 */
async function floors() {
  const { LockingModuleService } = require(require('./lib/common').ferrolockDir())
  const service = await LockingModuleService.connect({ redisUrl: cfg.url, namespace: cfg.namespace })
  const { samples } = cfg.params
  const timed = async (idle, op) => {
    const us = []
    for (let i = 0; i < samples; i++) {
      if (idle) await sleepP(1)
      const start = now()
      await op()
      us.push((now() - start) * 1000)
    }
    return percentile(us, 50)
  }
  const crossing = () =>
    service.acquire([]).then(
      () => {
        throw new Error('acquire([]) resolved')
      },
      (err) => {
        if (err?.code !== 'INVALID_ARGUMENT') throw err
      },
    )
  const crossingUs = await timed(false, crossing)
  const crossingIdleUs = await timed(true, crossing)
  await service.close()

  const net = require('node:net')
  const { hostname, port } = new URL(cfg.url)
  const socket = net.connect({ host: hostname, port: Number(port), noDelay: true })
  await new Promise((resolve, reject) => socket.once('connect', resolve).once('error', reject))
  const ping = () =>
    new Promise((resolve) => {
      socket.once('data', resolve)
      socket.write('PING\r\n')
    })
  const nodeRttIdleUs = await timed(true, ping)
  socket.destroy()
  return { crossingUs, crossingIdleUs, nodeRttIdleUs }
}

/** One RESP command as a string. */
function resp(args) {
  let out = `*${args.length}\r\n`
  for (const arg of args) out += `$${Buffer.byteLength(String(arg))}\r\n${arg}\r\n`
  return out
}

// The least a correct hand-over of a lock through Redis does: only the holder
// may pass the key on (compare), the next caller becomes its owner (set), and
// it is told so (publish). No queue, no fencing, no renewal.
const HAND_OVER = [
  "local held = redis.call('GET', KEYS[1])",
  'if held and held ~= ARGV[1] then return 0 end',
  "redis.call('SET', KEYS[1], ARGV[2], 'PX', 30000)",
  "return redis.call('PUBLISH', ARGV[3], ARGV[2])",
].join('\n')

/**
 * The hand-off floor, no lock library involved: the ring members (1 or
 * more processes) pass one key around through Redis with raw sockets from
 * Node. On its wake message a member runs W3's job (`await sleepP(jobMs)`),
 * then hands the key to the next member with HAND_OVER. The busy fraction
 * of this ring is the most a Node client of this Redis can get when every
 * hand-off goes through Redis.
 */
async function handOffRing() {
  const net = require('node:net')
  const { member, members, jobMs } = cfg.params
  const { hostname, port } = new URL(cfg.url)
  const connect = async () => {
    const socket = net.connect({ host: hostname, port: Number(port), noDelay: true })
    await new Promise((resolve, reject) => socket.once('connect', resolve).once('error', reject))
    return socket
  }
  const commands = await connect()
  const subscriber = await connect()
  commands.on('data', () => {})
  const key = `${cfg.namespace}ring`
  const channelOf = (m) => `${cfg.namespace}ring:${m}`
  const next = (member + 1) % members
  const handOver = () =>
    commands.write(resp(['EVAL', HAND_OVER, 1, key, `member-${member}`, `member-${next}`, channelOf(next)]))

  const jobs = []
  let stopAt = Infinity
  const turn = async () => {
    const record = { start: now() }
    await sleepP(jobMs)
    record.end = now()
    jobs.push(record)
    if (record.end < stopAt) handOver()
  }
  const subscribed = new Promise((resolve) => {
    subscriber.on('data', (chunk) => {
      const text = chunk.toString('latin1')
      if (text.includes('subscribe')) resolve()
      // Only one key travels the ring, so a chunk holds at most one wake message.
      if (text.includes('\r\nmessage\r\n')) turn()
    })
  })
  subscriber.write(resp(['SUBSCRIBE', channelOf(member)]))
  await subscribed
  const go = await new Promise((resolve) => {
    process.on('message', (msg) => {
      if (msg.type === 'go') resolve(msg)
    })
    process.send({ type: 'ready' })
  })
  const windowEnd = go.t0 + go.warmMs + go.windowMs
  stopAt = windowEnd
  await sleep(go.t0 - now())
  // The last member starts the ring by handing the (free) key on to the first.
  if (member === members - 1) handOver()
  await sleep(windowEnd - now() + 2 * jobMs + 50)
  if (member === 0) {
    commands.write(resp(['DEL', key]))
    await new Promise((resolve) => commands.once('data', resolve))
  }
  commands.destroy()
  subscriber.destroy()
  return { jobs }
}

const ROLES = { pairs, multiKey, hot, hotProcess, memory, precheck, floors, handOffRing }

async function main() {
  const role = ROLES[cfg.role]
  if (!role) throw new Error(`unknown role ${cfg.role}`)
  if (role === floors || role === handOffRing) return role()
  const lock = await connectContender(cfg.contender, cfg)
  probe = probeConnection(cfg.clusterNodes ?? cfg.url)
  const result = await role(lock, probe)
  // What the run itself left behind (the parent then deletes the namespace anyway).
  result.leftoverKeys = (await scanNamespace(probe, cfg.namespace)).length
  await lock.close()
  probe.disconnect()
  return result
}

main().then(
  (result) => process.send({ type: 'result', result }, () => process.exit(0)),
  (err) => process.send({ type: 'error', message: String(err?.stack ?? err) }, () => process.exit(1)),
)
