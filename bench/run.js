#!/usr/bin/env node
'use strict'
// Side-by-side benchmark: ferrolock vs @medusajs/locking-redis, same run, same
// throwaway Redis; and ferrolock on a throwaway Redis Cluster (W2, W3) against
// ferrolock on the standalone one. See bench/README.md.
//
//   node bench/run.js [--reps N] [--quick] [--only W1,W3] [--contenders a,b,c] [--cluster | --no-cluster] [--ferrolock DIR]

const { fork, execFileSync } = require('node:child_process')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const crypto = require('node:crypto')
const { startRedis } = require('../scripts/redis-server')
const { startCluster } = require('../scripts/redis-topologies')
const { now, CONTENDERS, isClusterContender, probeConnection, purgeNamespace, procsCpuMs, median, scriptUs, ferrolockDir, addonInfo } = require('./lib/common')
const { analyzeHot } = require('./lib/hot')

const ROOT = path.join(__dirname, '..')
const WORKER = path.join(__dirname, 'worker.js')
const RESULTS_DIR = path.join(__dirname, 'results')
const BASELINE = 'medusa'
// The cluster rows compare ferrolock on the cluster with ferrolock on the standalone Redis.
const CLUSTER = 'ferrolock-cluster'
const CLUSTER_REFERENCE = 'ferrolock'
const CHILD_TIMEOUT_MS = 180_000

// ---------------------------------------------------------------- arguments

function parseArgs(argv) {
  const args = { reps: undefined, quick: false, only: null, contenders: Object.keys(CONTENDERS), cluster: undefined }
  for (let i = 0; i < argv.length; i++) {
    const [flag, inline] = argv[i].split(/=(.*)/s)
    const value = () => {
      const v = inline ?? argv[++i]
      if (v === undefined) throw new Error(`${flag} needs a value`)
      return v
    }
    if (flag === '--reps') {
      args.reps = Number(value())
      if (!Number.isInteger(args.reps) || args.reps < 1) throw new Error('--reps must be a positive integer')
    } else if (flag === '--quick') args.quick = true
    else if (flag === '--only') args.only = value().split(',').map((s) => s.trim().toUpperCase()).filter(Boolean)
    else if (flag === '--contenders') {
      args.contenders = value().split(',').map((s) => s.trim()).filter(Boolean)
      for (const c of args.contenders) {
        if (!CONTENDERS[c]) throw new Error(`unknown contender "${c}" (known: ${Object.keys(CONTENDERS).join(', ')})`)
      }
    } else if (flag === '--cluster') args.cluster = true
    else if (flag === '--no-cluster') args.cluster = false
    else if (flag === '--ferrolock') {
      // Another build of the package (a directory with index.js and its .node); the workers inherit it.
      process.env.FERROLOCK_PACKAGE = path.resolve(value())
    } else if (flag === '--help' || flag === '-h') {
      console.log(
        'usage: node bench/run.js [--reps N] [--quick] [--only W1,W3,...] [--contenders ferrolock,medusa,medusa-5/200,ferrolock-cluster] [--cluster | --no-cluster] [--ferrolock DIR]\n' +
          '  --cluster     add ferrolock-cluster (ferrolock on a 3-master + 3-replica Redis Cluster; runs W2 and W3 only)\n' +
          '  --no-cluster  leave it out (no cluster is started)',
      )
      process.exit(0)
    } else throw new Error(`unknown argument ${argv[i]}`)
  }
  args.reps ??= args.quick ? 1 : 3
  if (args.cluster === true && !args.contenders.includes(CLUSTER)) args.contenders.push(CLUSTER)
  if (args.cluster === false) args.contenders = args.contenders.filter((c) => !isClusterContender(c))
  if (args.contenders.length === 0) throw new Error('no contenders left')
  return args
}

// ---------------------------------------------------------------- workloads

const PAIR_METRICS = [
  ['opsPerSec', 'pairs/s', 'higher'],
  ['p50Us', 'p50 µs/pair', 'lower'],
  ['p99Us', 'p99 µs/pair', 'lower'],
  ['nodeCpuUsPerOp', 'Node CPU µs/pair', 'lower'],
  ['redisCpuUsPerOp', 'Redis CPU µs/pair', 'lower'],
  ['redisMastersCpuUsPerOp', 'Redis CPU µs/pair, cluster masters only', 'lower', 'median', 'cluster'],
  ['redisScriptUsPerOp', 'Redis µs/pair inside scripts', 'lower'],
]
const HOT_METRICS = [
  ['executesPerSec', 'executes/s', 'higher'],
  ['handoffP50Ms', 'hand-off p50 ms', 'lower'],
  ['handoffP99Ms', 'hand-off p99 ms', 'lower'],
  ['crossCallerHandoffs', 'cross-caller hand-offs (count)', null],
  ['sameCallerFraction', 'same caller re-wins', 'lower'],
  ['callersServedInWindow', 'callers served in window (of 16)', 'higher'],
  ['busyFraction', 'busy fraction', 'higher'],
  ['jobP50Ms', 'job p50 ms', null],
  ['longestWaitMs', 'longest wait ms', 'lower'],
  ['timeouts', 'timeouts (sum of reps)', 'lower', 'sum'],
  ['nodeCpuUsPerOp', 'Node CPU µs/execute', 'lower'],
  ['redisCpuUsPerOp', 'Redis CPU µs/execute', 'lower'],
  ['redisMastersCpuUsPerOp', 'Redis CPU µs/execute, cluster masters only', 'lower', 'median', 'cluster'],
  ['redisScriptUsPerOp', 'Redis µs/execute inside scripts', 'lower'],
]
const MULTI_METRICS = [
  ['opsPerSec', 'executes/s', 'higher'],
  ['p50Us', 'p50 µs/execute', 'lower'],
  ['p99Us', 'p99 µs/execute', 'lower'],
  ['timeouts', 'timeouts (sum of reps)', 'lower', 'sum'],
  ['nodeCpuUsPerOp', 'Node CPU µs/execute', 'lower'],
  ['redisCpuUsPerOp', 'Redis CPU µs/execute', 'lower'],
  ['redisScriptUsPerOp', 'Redis µs/execute inside scripts', 'lower'],
]
const MEMORY_METRICS = [
  ['redisBytesPerLock', 'Redis bytes/lock (used_memory)', 'lower'],
  ['memoryUsageOneKey', 'MEMORY USAGE of one key, bytes', 'lower'],
  ['nodeRssBytesPerLock', 'Node RSS bytes/held lock', 'lower'],
  ['bulkAcquirePerSec', 'bulk acquire locks/s (256 in flight)', 'higher'],
  ['releaseAllFewMs', 'releaseAll ms, 10 locks among N', 'lower'],
  ['releaseAllBulkMs', 'releaseAll ms, all N locks', 'lower'],
]

function workloads(quick) {
  const loop = quick ? { warmMs: 200, windowMs: 800 } : { warmMs: 500, windowMs: 2500 }
  const hot = quick ? { warmMs: 300, windowMs: 1200 } : { warmMs: 500, windowMs: 3000 }
  const locks = quick ? 20_000 : 100_000
  return [
    { id: 'W1', title: 'acquire+release, distinct keys, concurrency 1', role: 'pairs', params: { concurrency: 1, ...loop }, metrics: PAIR_METRICS },
    { id: 'W2', title: 'acquire+release, distinct keys, concurrency 64', role: 'pairs', cluster: true, params: { concurrency: 64, ...loop }, metrics: PAIR_METRICS },
    { id: 'W3-immediate', title: 'execute, 1 hot key, 16 callers in 1 process, immediate job', role: 'hot', cluster: true, params: { callers: 16, jobMs: 0, timeoutS: 30, ...hot }, metrics: HOT_METRICS },
    { id: 'W3-1ms', title: 'execute, 1 hot key, 16 callers in 1 process, 1 ms job', role: 'hot', cluster: true, params: { callers: 16, jobMs: 1, timeoutS: 30, ...hot }, metrics: HOT_METRICS },
    { id: 'W4-immediate', title: 'execute, 1 hot key, 4 processes x 4 callers, immediate job', role: 'hot4', params: { processes: 4, callers: 4, jobMs: 0, timeoutS: 30, ...hot }, metrics: HOT_METRICS },
    { id: 'W4-1ms', title: 'execute, 1 hot key, 4 processes x 4 callers, 1 ms job', role: 'hot4', params: { processes: 4, callers: 4, jobMs: 1, timeoutS: 30, ...hot }, metrics: HOT_METRICS },
    { id: 'W5', title: 'execute on 10 keys (disjoint per caller), concurrency 16, immediate job', role: 'multiKey', params: { concurrency: 16, keysPerCall: 10, poolSize: 1000, timeoutS: 30, ...loop }, metrics: MULTI_METRICS },
    { id: 'W6', title: `memory and releaseAll with N = ${locks.toLocaleString('en-US')} held locks`, role: 'memory', params: { locks, inFlight: 256, expireS: 600, fewLocks: 10 }, metrics: MEMORY_METRICS },
  ]
}

// ---------------------------------------------------------------- child processes

/** Forks bench/worker.js; `result` settles with its report, `onMessage` sees the others. */
function spawnWorker(cfg, onMessage = () => {}) {
  const child = fork(WORKER, [JSON.stringify(cfg)], { execArgv: ['--expose-gc'], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
  const result = new Promise((resolve, reject) => {
    let settled = false
    const timer = setTimeout(() => {
      child.kill('SIGKILL')
      reject(new Error(`${cfg.role} worker for ${cfg.contender} did not finish in ${CHILD_TIMEOUT_MS / 1000} s`))
    }, CHILD_TIMEOUT_MS)
    child.on('message', (msg) => {
      if (msg.type === 'result') {
        settled = true
        resolve(msg.result)
      } else if (msg.type === 'error') {
        settled = true
        reject(new Error(`${cfg.role} worker for ${cfg.contender} failed: ${msg.message}`))
      } else onMessage(msg)
    })
    child.on('exit', (code, signal) => {
      clearTimeout(timer)
      if (!settled) reject(new Error(`${cfg.role} worker for ${cfg.contender} exited with ${code ?? signal} before reporting`))
    })
  })
  result.catch(() => {})
  return { child, result }
}

/**
 * W4: four processes, four callers each, one hot key. The processes share a
 * start time; jobs are merged on performance.timeOrigin + performance.now().
 */
async function runHotProcesses(base, wl, probe) {
  const { processes, warmMs, windowMs } = wl.params
  const readyWaiters = []
  const pongWaiters = []
  const workers = Array.from({ length: processes }, (_, procIndex) => {
    let ready
    readyWaiters.push(new Promise((resolve) => (ready = resolve)))
    const pongs = []
    pongWaiters.push(pongs)
    const w = spawnWorker({ ...base, role: 'hotProcess', params: { ...wl.params, procIndex } }, (msg) => {
      if (msg.type === 'ready') ready()
      else if (msg.type === 'pong') pongs.shift()?.(msg.t)
    })
    return w
  })
  try {
    await Promise.race([Promise.all(readyWaiters), Promise.all(workers.map((w) => w.result))])
    // Clock check: the child's now() should fall between our send and its reply.
    const offsets = []
    for (let i = 0; i < workers.length; i++) {
      let best = null
      for (let k = 0; k < 5; k++) {
        const sent = now()
        const t = await new Promise((resolve) => {
          pongWaiters[i].push(resolve)
          workers[i].child.send({ type: 'ping' })
        })
        const back = now()
        const rtt = back - sent
        if (!best || rtt < best.rtt) best = { rtt, offset: t - (sent + back) / 2 }
      }
      offsets.push(best)
    }
    const t0 = now() + 200
    const ws = t0 + warmMs
    const we = ws + windowMs
    let redisA
    let redisB
    setTimeout(() => (redisA = procsCpuMs(base.redisPids, base.clkTck)), ws - now())
    setTimeout(() => (redisB = procsCpuMs(base.redisPids, base.clkTck)), we - now())
    let scriptsA
    let scriptsB
    setTimeout(() => (scriptsA = probe.info('commandstats')), ws - now())
    setTimeout(() => (scriptsB = probe.info('commandstats')), we - now())
    for (const w of workers) w.child.send({ type: 'go', t0, warmMs, windowMs })
    const reports = await Promise.all(workers.map((w) => w.result))
    const analysis = analyzeHot({
      jobs: reports.flatMap((r) => r.jobs),
      timeouts: reports.flatMap((r) => r.timeouts),
      ws,
      we,
    })
    const nodeCpuMs = reports.reduce((sum, r) => sum + r.nodeCpuMs, 0)
    const ops = analysis.executes
    return {
      ...analysis,
      nodeCpuUsPerOp: ops ? (nodeCpuMs * 1000) / ops : null,
      redisCpuUsPerOp: ops ? ((redisB - redisA) * 1000) / ops : null,
      redisScriptUsPerOp: ops ? ((await scriptUs(scriptsB)) - (await scriptUs(scriptsA))) / ops : null,
      nodeCpuMs,
      redisCpuMs: redisB - redisA,
      maxInJob: Math.max(...reports.map((r) => r.maxInJob)),
      errors: reports.reduce((sum, r) => sum + r.errors, 0),
      firstError: reports.find((r) => r.firstError)?.firstError,
      // Each process's own SCAN can see the others still draining; what is left once all have
      // exited is what counts, and the harness's SCAN + DEL after the run reports that.
      clockOffsetsMs: offsets.map((o) => ({ offset: o.offset, plusMinus: o.rtt / 2 })),
    }
  } catch (err) {
    for (const w of workers) w.child.kill('SIGKILL')
    throw err
  }
}

// ---------------------------------------------------------------- floors and bounds

/**
 * What no client of this Redis on this machine can go below: a C client's
 * round trip at concurrency 1 (redis-benchmark SET), and from the floors
 * worker ferrolock's JS -> Rust -> JS crossing and a Node round trip.
 */
async function measureFloors(port, cfg) {
  const csv = execFileSync('redis-benchmark', ['-h', '127.0.0.1', '-p', String(port), '-c', '1', '-n', '20000', '-t', 'set', '--csv'], {
    encoding: 'utf8',
  })
  const rps = Number(/^"SET","([\d.]+)"/m.exec(csv)?.[1])
  const worker = await spawnWorker({ ...cfg, role: 'floors', params: { samples: 2000 } }).result
  const handOff = {}
  for (const members of [1, 4]) {
    const reps = []
    for (let rep = 0; rep < 3; rep++) reps.push(await runHandOffRing(cfg, members))
    const mid = (key) => median(reps.map((r) => r[key]))
    handOff[members] = { busyFraction: mid('busyFraction'), jobMeanMs: mid('jobMeanMs'), gapMeanUs: mid('gapMeanUs'), reps }
  }
  return { cRttUs: rps ? 1e6 / rps : null, ...worker, handOff }
}

/**
 * The hand-off floor: `members` Node processes pass one key around through
 * Redis with raw sockets and a minimal hand-over script, a 1 ms job per turn
 * (worker role handOffRing). Returns the busy fraction over the window.
 */
async function runHandOffRing(cfg, members, warmMs = 300, windowMs = 2000) {
  const ready = []
  const workers = Array.from({ length: members }, (_, member) => {
    let onReady
    ready.push(new Promise((resolve) => (onReady = resolve)))
    return spawnWorker({ ...cfg, role: 'handOffRing', params: { member, members, jobMs: 1 } }, (msg) => {
      if (msg.type === 'ready') onReady()
    })
  })
  try {
    await Promise.race([Promise.all(ready), Promise.all(workers.map((w) => w.result))])
    const t0 = now() + 100
    const ws = t0 + warmMs
    const we = ws + windowMs
    for (const w of workers) w.child.send({ type: 'go', t0, warmMs, windowMs })
    const jobs = (await Promise.all(workers.map((w) => w.result))).flatMap((r) => r.jobs)
    let busyMs = 0
    let inWindow = 0
    for (const job of jobs) {
      const overlap = Math.min(job.end, we) - Math.max(job.start, ws)
      if (overlap <= 0) continue
      busyMs += overlap
      inWindow++
    }
    const jobMeanMs = busyMs / inWindow
    return { busyFraction: busyMs / windowMs, jobMeanMs, gapMeanUs: ((windowMs - busyMs) / inWindow) * 1000, jobs: inWindow }
  } catch (err) {
    for (const w of workers) w.child.kill('SIGKILL')
    throw err
  }
}

/**
 * The issue's speed targets next to the best this machine allows ferrolock,
 * from the same run: each bound is arithmetic on measured figures only.
 */
function boundsOf(output) {
  const f = output.floors
  const m = (id, c, key) => output.workloads[id]?.medians[c]?.[key]
  const rows = []
  const throughput = (id, factor, bound, basis) => {
    const medusa = m(id, BASELINE, 'opsPerSec')
    if (typeof medusa !== 'number' || typeof bound !== 'number') return
    rows.push({ target: `${id} >= ${factor}x medusa`, needed: factor * medusa, bound, basis, reachable: bound >= factor * medusa })
  }
  if (f) {
    const w1Scripts = m('W1', 'ferrolock', 'redisScriptUsPerOp')
    const floorUs = 2 * (f.cRttUs + f.crossingUs) + (w1Scripts ?? 0)
    throughput('W1', 1.2, 1e6 / floorUs, `1e6 / (2 x (C client round trip ${fmt(f.cRttUs)} us + JS-Rust-JS crossing ${fmt(f.crossingUs)} us) + scripts ${fmt(w1Scripts)} us per pair)`)
  }
  for (const [id, factor] of [['W2', 2], ['W5', 3]]) {
    const scripts = m(id, 'ferrolock', 'redisScriptUsPerOp')
    if (scripts) throughput(id, factor, 1e6 / scripts, `1e6 / ferrolock's ${fmt(scripts)} us inside scripts per op: Redis runs scripts on one thread, whatever the client`)
  }
  if (f?.handOff) {
    for (const [id, members] of [
      ['W3-1ms', 1],
      ['W4-1ms', 4],
    ]) {
      const ring = f.handOff[members]
      if (!ring || typeof m(id, 'ferrolock', 'jobP50Ms') !== 'number') continue
      const where = members === 1 ? 'within 1 process' : `between ${members} processes`
      rows.push({
        target: `${id} busy >= 0.9 (any Node client)`,
        needed: 0.9,
        bound: ring.busyFraction,
        basis: `measured: a 1 ms job handed on ${where} through Redis with raw sockets and a 3-call script (compare, set, publish); gap ${fmt(ring.gapMeanUs)} us per hand-off`,
        reachable: ring.busyFraction >= 0.9,
      })
      // A native addon pays one JS -> Rust -> JS crossing per hand-off on top: the releaser's
      // call goes to the Rust thread, the waiter's grant comes back from it.
      const gapUs = ring.gapMeanUs + f.crossingIdleUs
      const bound = ring.jobMeanMs / (ring.jobMeanMs + gapUs / 1000)
      rows.push({
        target: `${id} busy >= 0.9 (native addon)`,
        needed: 0.9,
        bound,
        basis: `job ${fmt(ring.jobMeanMs)} ms / (job + that gap + crossing after 1 ms idle ${fmt(f.crossingIdleUs)} us)`,
        reachable: bound >= 0.9,
      })
    }
  }
  return rows
}

// ---------------------------------------------------------------- formatting

function fmt(v) {
  if (v === null || v === undefined || Number.isNaN(v)) return '–'
  if (typeof v !== 'number') return String(v)
  const a = Math.abs(v)
  const digits = a >= 100 ? 0 : a >= 10 ? 1 : a >= 1 ? 2 : a === 0 ? 0 : 3
  return v.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits })
}

function ratio(a, b) {
  if (typeof a !== 'number' || typeof b !== 'number' || b === 0 || !Number.isFinite(a) || !Number.isFinite(b)) return null
  return a / b
}

function table(rows, { groups = true, leftAligned = [0, 1] } = {}) {
  const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => String(r[i]).length)))
  const cell = (value, i) => (leftAligned.includes(i) ? String(value).padEnd(widths[i]) : String(value).padStart(widths[i]))
  const line = (r) => r.map(cell).join('  ').trimEnd()
  const out = [line(rows[0]), widths.map((w) => '-'.repeat(w)).join('  ')]
  let last = null
  for (const r of rows.slice(1)) {
    // A blank line between groups (workloads) of the main table.
    if (groups && last !== null && r[0] !== '' && r[0] !== last) out.push('')
    if (r[0] !== '') last = r[0]
    out.push(line(r))
  }
  return out.join('\n')
}

// ---------------------------------------------------------------- main

function machineInfo() {
  const version = (cmd, args) => {
    try {
      return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim()
    } catch {
      return null
    }
  }
  const pkg = (name) => {
    try {
      return require(require.resolve(`${name}/package.json`, { paths: [ROOT] })).version
    } catch {
      return null
    }
  }
  const cpus = os.cpus()
  return {
    cpus: cpus.length,
    cpuModel: cpus[0]?.model,
    totalMemMB: Math.round(os.totalmem() / 2 ** 20),
    os: `${os.type()} ${os.release()} ${os.arch()}`,
    loadavgAtStart: os.loadavg(),
    node: process.version,
    redisServer: version('redis-server', ['--version']),
    ferrolock: require(path.join(ferrolockDir(), 'package.json')).version,
    ferrolockPackage: ferrolockDir(),
    ferrolockAddon: addonInfo(),
    repoCommit: version('git', ['-C', ROOT, 'rev-parse', 'HEAD']),
    repoWorktreeDirty: (version('git', ['-C', ROOT, 'status', '--porcelain']) ?? '') !== '',
    medusaLockingRedis: pkg('@medusajs/locking-redis'),
    ioredis: pkg('ioredis'),
  }
}

async function main() {
  const args = parseArgs(process.argv.slice(2))
  const started = now()
  const startedAt = new Date()
  let plan = workloads(args.quick)
  if (args.only) {
    plan = plan.filter((wl) => args.only.some((o) => wl.id.toUpperCase() === o || wl.id.toUpperCase().startsWith(`${o}-`)))
    if (plan.length === 0) throw new Error(`--only ${args.only.join(',')} matches no workload (W1..W6)`)
  }
  // The cluster contender runs only the workloads marked `cluster`; without one in the plan it is dropped.
  const runsOn = (wl, c) => !isClusterContender(c) || wl.cluster === true
  const contenders = args.contenders.filter((c) => plan.some((wl) => runsOn(wl, c)))
  const clusterContenders = contenders.filter(isClusterContender)
  const clkTck = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100
  const machine = machineInfo()
  const runId = crypto.randomBytes(3).toString('hex')
  const log = (...m) => console.error(`[${((now() - started) / 1000).toFixed(1).padStart(6)} s]`, ...m)

  const redis = await startRedis()
  const probe = probeConnection(redis.url)
  log(`redis-server pid ${redis.pid} on port ${redis.port}; contenders ${contenders.join(', ')}; ${args.reps} rep(s); ${plan.map((w) => w.id).join(' ')}`)
  // The cluster lives for the whole run (idle while the standalone contenders run).
  let cluster = null
  let clusterProbe = null
  let clusterMasterPids = null
  if (clusterContenders.length) {
    try {
      cluster = await startCluster()
      clusterMasterPids = (await cluster.masters()).map((n) => n.pid)
      clusterProbe = probeConnection(cluster.urls)
    } catch (err) {
      probe.disconnect()
      await cluster?.stop()
      await redis.stop()
      throw err
    }
    machine.redisCluster = {
      nodes: cluster.nodes.map((n) => ({ port: n.port, pid: n.pid, role: clusterMasterPids.includes(n.pid) ? 'master' : 'replica' })),
      startedBy: 'scripts/redis-topologies.js startCluster (redis-cli --cluster create --cluster-replicas 1)',
    }
    log(`redis cluster: masters on ports ${cluster.nodes.filter((n) => clusterMasterPids.includes(n.pid)).map((n) => n.port).join(', ')}, replicas on ${cluster.nodes.filter((n) => !clusterMasterPids.includes(n.pid)).map((n) => n.port).join(', ')}`)
  }
  const base = (contender, namespace) =>
    isClusterContender(contender)
      ? { contender, url: cluster.urls[0], clusterNodes: cluster.urls, namespace, redisPids: cluster.nodes.map((n) => n.pid), redisMasterPids: clusterMasterPids, clkTck }
      : { contender, url: redis.url, namespace, redisPids: [redis.pid], clkTck }
  const warnings = []
  if (contenders.some((c) => CONTENDERS[c].impl === 'ferrolock') && machine.ferrolockAddon.some((a) => a.debugBuild)) {
    warnings.push(`ferrolock's addon ${machine.ferrolockAddon.map((a) => a.file).join(', ')} is a DEBUG build: its figures say little about a release build (npm run build)`)
    log(`WARNING: ${warnings.at(-1)}`)
  }
  const cleanUp = async (contender, namespace, label) => {
    const n = await purgeNamespace(isClusterContender(contender) ? clusterProbe : probe, namespace)
    if (n) warnings.push(`${label}: the harness had to DEL ${n} key(s) left in ${namespace}`)
    return n
  }

  const output = {
    startedAt: startedAt.toISOString(),
    argv: process.argv.slice(2),
    quick: args.quick,
    reps: args.reps,
    baseline: BASELINE,
    machine,
    contenders: Object.fromEntries(contenders.map((c) => [c, CONTENDERS[c]])),
    precheck: {},
    workloads: {},
    warnings,
  }

  try {
    // Correctness first: a contender that does not exclude is not benchmarked.
    for (const [i, c] of contenders.entries()) {
      const ns = `bench:${runId}:pre:${i}:`
      const result = await spawnWorker({ ...base(c, ns), role: 'precheck', params: { callers: 16, perCaller: 8 } }).result
      await cleanUp(c, ns, `precheck ${c}`)
      output.precheck[c] = result
      log(`pre-check ${c}: ${result.ok ? 'ok' : 'FAILED'} (${result.executes} executes, max ${result.maxInJob} in job at once)`)
      if (!result.ok) {
        output.aborted = `contender ${c} failed the correctness pre-check: ${result.problems.join('; ')}`
        break
      }
    }

    if (!output.aborted) {
      for (const wl of plan) {
        const on = contenders.filter((c) => runsOn(wl, c))
        output.workloads[wl.id] = { title: wl.title, params: wl.params, runs: Object.fromEntries(on.map((c) => [c, []])) }
      }
      for (let rep = 1; rep <= args.reps; rep++) {
        for (const wl of plan) {
          for (const [i, c] of contenders.entries()) {
            if (!runsOn(wl, c)) continue
            const ns = `bench:${runId}:r${rep}:${i}:${wl.id}:`
            const t = now()
            let result
            if (wl.role === 'hot4') result = await runHotProcesses(base(c, ns), wl, probe)
            else result = await spawnWorker({ ...base(c, ns), role: wl.role, params: wl.params }).result
            const label = `${wl.id} rep ${rep} ${c}`
            result.keysDeletedByHarness = await cleanUp(c, ns, label)
            if (result.leftoverKeys) warnings.push(`${label}: ${result.leftoverKeys} key(s) still locked after the run`)
            if (result.overlaps) warnings.push(`${label}: ${result.overlaps} overlapping critical sections (timestamps)`)
            if (result.maxInJob > 1) warnings.push(`${label}: ${result.maxInJob} jobs at once in one process`)
            if (result.errors) warnings.push(`${label}: ${result.errors} errors, first: ${result.firstError}`)
            if (result.failedReleases) warnings.push(`${label}: ${result.failedReleases} releases returned false`)
            if (result.problems?.length) warnings.push(`${label}: ${result.problems.join('; ')}`)
            output.workloads[wl.id].runs[c].push({ rep, ...result })
            const [key, name] = wl.metrics[0]
            log(`${label.padEnd(32)} ${name} ${fmt(result[key])}${result.timeouts ? `, ${result.timeouts} timeouts` : ''} (${((now() - t) / 1000).toFixed(1)} s)`)
          }
        }
      }

      if (contenders.includes('ferrolock') && contenders.includes(BASELINE)) {
        output.floors = await measureFloors(redis.port, base('ferrolock', `bench:${runId}:floors:`))
        log(`floors: C client round trip ${fmt(output.floors.cRttUs)} us; crossing ${fmt(output.floors.crossingUs)} us (after 1 ms idle ${fmt(output.floors.crossingIdleUs)} us); Node round trip after 1 ms idle ${fmt(output.floors.nodeRttIdleUs)} us; hand-off ring busy ${fmt(output.floors.handOff[1].busyFraction)} (1 process) / ${fmt(output.floors.handOff[4].busyFraction)} (4 processes)`)
      }

      // Medians of the per-rep figures, and ratios against Medusa's defaults (and, for the
      // cluster contender, against ferrolock on the standalone Redis).
      for (const wl of plan) {
        const entry = output.workloads[wl.id]
        const on = Object.keys(entry.runs)
        entry.metrics = wl.metrics.map(([key, label, better, agg]) => ({ key, label, better, aggregate: agg ?? 'median' }))
        entry.medians = {}
        entry.ranges = {}
        entry.ratiosVsMedusa = {}
        for (const c of on) {
          entry.medians[c] = {}
          entry.ranges[c] = {}
          for (const [key, , , agg] of wl.metrics) {
            const values = entry.runs[c].map((r) => r[key])
            entry.medians[c][key] = agg === 'sum' ? values.reduce((s, v) => s + (v ?? 0), 0) : median(values)
            const finite = values.filter((v) => typeof v === 'number' && Number.isFinite(v))
            entry.ranges[c][key] = finite.length ? [Math.min(...finite), Math.max(...finite)] : null
          }
        }
        if (entry.medians[BASELINE]) {
          for (const c of on) {
            entry.ratiosVsMedusa[c] = {}
            for (const [key] of wl.metrics) entry.ratiosVsMedusa[c][key] = ratio(entry.medians[c][key], entry.medians[BASELINE][key])
          }
        }
        if (entry.medians[CLUSTER] && entry.medians[CLUSTER_REFERENCE]) {
          entry.ratiosClusterVsStandalone = {}
          for (const [key] of wl.metrics) entry.ratiosClusterVsStandalone[key] = ratio(entry.medians[CLUSTER][key], entry.medians[CLUSTER_REFERENCE][key])
        }
      }
    }
  } finally {
    probe.disconnect()
    clusterProbe?.disconnect()
    await cluster?.stop()
    await redis.stop()
  }

  if (!output.aborted) output.bounds = boundsOf(output)
  output.finishedAt = new Date().toISOString()
  output.machine.loadavgAtEnd = os.loadavg()
  output.durationS = (now() - started) / 1000
  fs.mkdirSync(RESULTS_DIR, { recursive: true })
  const file = path.join(RESULTS_DIR, `${startedAt.toISOString().replace(/:/g, '-')}.json`)
  fs.writeFileSync(file, `${JSON.stringify(output, null, 2)}\n`)

  if (output.aborted) {
    console.error(`\nABORTED: ${output.aborted}\nNothing was timed. Pre-check report: ${path.relative(process.cwd(), file)}`)
    process.exitCode = 1
    return
  }
  fs.writeFileSync(path.join(RESULTS_DIR, 'latest.json'), `${JSON.stringify(output, null, 2)}\n`)

  // The table: medians over reps (sums for timeouts); ratio = ferrolock / medusa, and
  // ferrolock-cluster / ferrolock (standalone) when the cluster contender ran.
  const cols = contenders
  const withCluster = contenders.includes(CLUSTER)
  const rows = [['workload', 'metric', ...cols, 'ferrolock vs medusa', ...(withCluster ? ['cluster vs standalone'] : [])]]
  const times = (r) => (r === null || r === undefined ? '–' : `${fmt(r)}×`)
  for (const wl of plan) {
    const entry = output.workloads[wl.id]
    const clusterRan = Boolean(entry.medians[CLUSTER])
    let n = 0
    for (const [key, label, better, , only] of wl.metrics) {
      if (only === 'cluster' && !clusterRan) continue
      const arrow = better === 'higher' ? ' (↑)' : better === 'lower' ? ' (↓)' : ''
      rows.push([
        n++ === 0 ? wl.id : '',
        label + arrow,
        ...cols.map((c) => (entry.medians[c] ? fmt(entry.medians[c][key]) : 'n/a')),
        times(entry.ratiosVsMedusa.ferrolock?.[key]),
        ...(withCluster ? [times(entry.ratiosClusterVsStandalone?.[key])] : []),
      ])
    }
  }
  console.log('')
  const build = machine.ferrolockAddon.some((a) => a.debugBuild) ? 'DEBUG build' : 'release build'
  console.log(`ferrolock ${machine.ferrolock} (${build} at ${machine.ferrolockPackage}; repo ${machine.repoCommit?.slice(0, 8)}${machine.repoWorktreeDirty ? ', dirty' : ''}) vs @medusajs/locking-redis ${machine.medusaLockingRedis}; ${machine.redisServer?.split(' ').slice(0, 3).join(' ')}; node ${machine.node}; ${machine.cpus} CPUs`)
  console.log(`medians of ${args.reps} rep(s)${args.quick ? ' (quick)' : ''}; (↑)/(↓): higher/lower is better; ratio = ferrolock ÷ medusa (defaults)`)
  if (withCluster) {
    console.log(`${CLUSTER}: ferrolock on a Redis Cluster of 3 masters + 3 replicas on this machine, W2 and W3 only (n/a elsewhere); "cluster vs standalone" = ${CLUSTER} ÷ ${CLUSTER_REFERENCE} (standalone).`)
    console.log(`  Medusa has no cluster figure: @medusajs/locking-redis takes one \`new Redis(url)\` and cannot run on a cluster; its columns are standalone, kept as the reference.`)
    console.log(`  ${CLUSTER}'s Redis CPU is the sum over all 6 cluster processes (replicas included); the "masters only" row is the 3 masters' share.`)
  }
  for (const wl of plan) console.log(`  ${wl.id}: ${output.workloads[wl.id].title}`)
  console.log('')
  console.log(table(rows))
  console.log('')
  if (output.bounds.length) {
    console.log('Targets vs what this machine allows (bounds from figures of this run):')
    console.log(
      table([
        ['target', 'needed', 'bound', 'reachable', 'bound ='],
        ...output.bounds.map((b) => [b.target, fmt(b.needed), fmt(b.bound), b.reachable ? 'yes' : 'NO', b.basis]),
      ], { groups: false, leftAligned: [0, 4] }),
    )
    console.log('')
  }
  if (warnings.length) {
    console.log(`WARNINGS (${warnings.length}):`)
    for (const w of warnings) console.log(`  - ${w}`)
    console.log('')
  }
  console.log(`results: ${path.relative(process.cwd(), file)} (and bench/results/latest.json); total ${output.durationS.toFixed(0)} s`)
}

main().catch((err) => {
  console.error(err?.stack ?? err)
  process.exit(1)
})
