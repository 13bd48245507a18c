'use strict'
// Shared by the orchestrator (bench/run.js) and the measuring child processes
// (bench/worker.js): the contenders behind one interface, clocks, percentiles,
// and the CPU counters of a process read from /proc.

const fs = require('node:fs')
const path = require('node:path')

/** Wall-clock ms with sub-ms precision, comparable across processes on one machine. */
const now = () => performance.timeOrigin + performance.now()

const MEDUSA_PROVIDER_PATH = require.resolve('@medusajs/locking-redis/dist/services/redis-lock', {
  paths: [path.join(__dirname, '..', '..')],
})

/**
 * The contenders. `medusa` is @medusajs/locking-redis with its defaults
 * (defaultRetryInterval 20 ms, maximumRetryInterval 1000 ms, backoffFactor 2);
 * `medusa-5/200` passes the retry settings Medusa's documentation lists.
 * `ferrolock-cluster` is ferrolock with its defaults on a Redis Cluster of 3
 * masters + 3 replicas (`clusterNodes`); it runs only the workloads marked
 * `cluster` in bench/run.js. Medusa cannot run on a cluster: its provider
 * takes one `new Redis(url)`.
 */
const CONTENDERS = {
  ferrolock: { impl: 'ferrolock', options: {} },
  medusa: { impl: 'medusa', options: {} },
  'medusa-5/200': { impl: 'medusa', options: { defaultRetryInterval: 5, maximumRetryInterval: 200 } },
  'ferrolock-cluster': { impl: 'ferrolock', options: {}, topology: 'cluster' },
}

/** Whether a contender runs against the Redis Cluster rather than the standalone Redis. */
const isClusterContender = (name) => CONTENDERS[name]?.topology === 'cluster'

const TIMEOUT_MESSAGE = 'Timed-out acquiring lock.'

/**
 * Connects one contender and returns the four lock calls plus `close()` and
 * `isTimeout(error)`. The methods are called exactly as a user would call them.
 */
async function connectContender(name, { url, clusterNodes, namespace }) {
  const spec = CONTENDERS[name]
  if (!spec) throw new Error(`unknown contender "${name}" (known: ${Object.keys(CONTENDERS).join(', ')})`)
  if (spec.topology === 'cluster' && !clusterNodes?.length) throw new Error(`contender ${name} needs the cluster's node URLs`)
  if (spec.impl === 'ferrolock') {
    const { LockingModuleService } = require(ferrolockDir())
    const target = spec.topology === 'cluster' ? { clusterNodes } : { redisUrl: url }
    const svc = await LockingModuleService.connect({ ...target, namespace, ...spec.options })
    return {
      name,
      acquire: (keys, args) => svc.acquire(keys, args),
      release: (keys, args) => svc.release(keys, args),
      releaseAll: (args) => svc.releaseAll(args),
      execute: (keys, job, args) => svc.execute(keys, job, args),
      close: () => svc.close(),
      isTimeout: (err) => err?.code === 'LOCK_TIMEOUT' || err?.message === TIMEOUT_MESSAGE,
    }
  }
  const Redis = require('ioredis')
  const { RedisLockingProvider } = require(MEDUSA_PROVIDER_PATH)
  // As Medusa's own loader does: lazyConnect, then connect().
  const redisClient = new Redis(url, { lazyConnect: true })
  await redisClient.connect()
  const provider = new RedisLockingProvider({ redisClient, prefix: namespace }, spec.options)
  return {
    name,
    acquire: (keys, args) => provider.acquire(keys, args),
    release: (keys, args) => provider.release(keys, args),
    releaseAll: (args) => provider.releaseAll(args),
    execute: (keys, job, args) => provider.execute(keys, job, args),
    close: () => redisClient.quit(),
    isTimeout: (err) => err?.message === TIMEOUT_MESSAGE,
  }
}

/**
 * A plain ioredis connection for measuring (INFO, SCAN, GET), never used by a
 * contender: to one Redis (a URL), or an ioredis Cluster (an array of node URLs).
 */
function probeConnection(target) {
  const Redis = require('ioredis')
  return Array.isArray(target) ? new Redis.Cluster(target) : new Redis(target)
}

/** Every key of `namespace` on one node (SCAN; the namespaces used here have no glob characters). */
async function scanNode(redis, namespace) {
  if (/[*?[\]\\]/.test(namespace)) throw new Error(`namespace with glob characters: ${namespace}`)
  const keys = []
  let cursor = '0'
  do {
    const [next, found] = await redis.scan(cursor, 'MATCH', `${namespace}*`, 'COUNT', 1000)
    cursor = next
    keys.push(...found)
  } while (cursor !== '0')
  return keys
}

/** The master connections of an ioredis Cluster, once its slot map is known. */
async function clusterMasters(cluster) {
  if (cluster.status !== 'ready') await new Promise((resolve, reject) => {
    cluster.once('ready', resolve)
    cluster.once('error', reject)
  })
  return cluster.nodes('master')
}

/** Every key of `namespace`: on the one Redis, or on every master of a cluster. */
async function scanNamespace(redis, namespace) {
  if (!redis.isCluster) return scanNode(redis, namespace)
  const keys = []
  for (const node of await clusterMasters(redis)) keys.push(...(await scanNode(node, namespace)))
  return keys
}

/** DELs (UNLINKs) every key of `namespace`; resolves to how many there were. */
async function purgeNamespace(redis, namespace) {
  if (redis.isCluster) {
    // One UNLINK per key, on the master that holds it (several keys in one call would be CROSSSLOT).
    let n = 0
    for (const node of await clusterMasters(redis)) {
      const keys = await scanNode(node, namespace)
      for (let i = 0; i < keys.length; i += 1000) {
        const pipeline = node.pipeline()
        for (const key of keys.slice(i, i + 1000)) pipeline.unlink(key)
        await pipeline.exec()
      }
      n += keys.length
    }
    return n
  }
  const keys = await scanNode(redis, namespace)
  for (let i = 0; i < keys.length; i += 1000) await redis.unlink(...keys.slice(i, i + 1000))
  return keys.length
}

/** utime + stime of a process in ms, from /proc/<pid>/stat (clock-tick resolution). */
function procCpuMs(pid, clkTck) {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8')
  // Fields after "(comm)": state is field 3, utime 14, stime 15.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  return ((Number(fields[11]) + Number(fields[12])) * 1000) / clkTck
}

/** utime + stime of several processes (a cluster's nodes), summed, in ms. */
function procsCpuMs(pids, clkTck) {
  return pids.reduce((sum, pid) => sum + procCpuMs(pid, clkTck), 0)
}

/** process.cpuUsage() in µs (user + system; includes the addon's native threads). */
function nodeCpuUs() {
  const { user, system } = process.cpuUsage()
  return user + system
}

/** Nearest-rank percentile of an unsorted array (p in 0..100); null when empty. */
function percentile(values, p) {
  if (values.length === 0) return null
  const sorted = Float64Array.from(values).sort()
  const rank = Math.ceil((p / 100) * sorted.length)
  return sorted[Math.min(sorted.length, Math.max(1, rank)) - 1]
}

/** Median of the non-null numbers; null when there are none. */
function median(values) {
  const xs = values.filter((v) => typeof v === 'number' && Number.isFinite(v)).sort((a, b) => a - b)
  if (xs.length === 0) return null
  const mid = xs.length >> 1
  return xs.length % 2 ? xs[mid] : (xs[mid - 1] + xs[mid]) / 2
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, Math.max(0, ms)))

/** µs Redis spent inside Lua scripts so far (EVALSHA and EVAL in `INFO commandstats`, awaited). */
async function scriptUs(info) {
  let us = 0
  for (const [, usec] of (await info).matchAll(/^cmdstat_eval(?:sha)?:calls=\d+,usec=(\d+)/gm)) us += Number(usec)
  return us
}

module.exports = {
  now,
  CONTENDERS,
  isClusterContender,
  connectContender,
  probeConnection,
  scanNamespace,
  purgeNamespace,
  procCpuMs,
  procsCpuMs,
  nodeCpuUs,
  percentile,
  median,
  sleep,
  scriptUs,
}

/** The ferrolock package under test: the repository, unless FERROLOCK_PACKAGE names another build of it. */
function ferrolockDir() {
  return process.env.FERROLOCK_PACKAGE ? path.resolve(process.env.FERROLOCK_PACKAGE) : path.join(__dirname, '..', '..')
}

/** Section names of an ELF64 little-endian file (enough to tell a debug build from a release one). */
function elfSections(file) {
  const fd = fs.openSync(file, 'r')
  try {
    const read = (offset, length) => {
      const buf = Buffer.alloc(length)
      fs.readSync(fd, buf, 0, length, offset)
      return buf
    }
    const header = read(0, 64)
    if (header.readUInt32BE(0) !== 0x7f454c46 || header[4] !== 2) return null
    const shoff = Number(header.readBigUInt64LE(0x28))
    const shentsize = header.readUInt16LE(0x3a)
    const shnum = header.readUInt16LE(0x3c)
    const shstrndx = header.readUInt16LE(0x3e)
    const table = read(shoff, shentsize * shnum)
    const strSection = table.subarray(shstrndx * shentsize)
    const names = read(Number(strSection.readBigUInt64LE(0x18)), Number(strSection.readBigUInt64LE(0x20)))
    const out = []
    for (let i = 0; i < shnum; i++) {
      const at = table.readUInt32LE(i * shentsize)
      out.push(names.toString('latin1', at, names.indexOf(0, at)))
    }
    return out
  } finally {
    fs.closeSync(fd)
  }
}

/** Which native addon file ferrolock loads, and whether it is a debug build. */
function addonInfo(dir = ferrolockDir()) {
  const files = fs.readdirSync(dir).filter((f) => f.endsWith('.node'))
  return files.map((f) => {
    const file = path.join(dir, f)
    const stat = fs.statSync(file)
    let sections = null
    try {
      sections = elfSections(file)
    } catch {}
    return {
      file,
      sizeBytes: stat.size,
      modified: stat.mtime.toISOString(),
      debugBuild: sections ? sections.includes('.debug_info') : null,
    }
  })
}

module.exports.ferrolockDir = ferrolockDir
module.exports.addonInfo = addonInfo
