'use strict'

// The behaviour suite on Redis Cluster (3 masters + 3 replicas) and on
// Sentinel (master + replica + 3 sentinels), then a manual failover under
// multi-process load on each.

const { test, describe, before, after } = require('node:test')
const assert = require('node:assert/strict')
const path = require('node:path')
const { execFile } = require('node:child_process')
const { LockingModuleService } = require('..')
const { startRedis } = require('./helpers/redis')
const { startCluster, startSentinel, waitUntil } = require('../scripts/redis-topologies')
const { runWorkers } = require('../scripts/workers')

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

function redisCli(args) {
  return new Promise((resolve, reject) => {
    execFile('redis-cli', args, (error, stdout, stderr) => (error ? reject(new Error(stderr || error.message)) : resolve(stdout.trim())))
  })
}

/** Replays an enter/exit log without the lost jobs; returns the overlaps found. */
function overlapsAmong(entries, lost) {
  const skip = new Set(lost)
  const overlaps = []
  let holder = null
  for (const entry of entries) {
    const [kind, ...rest] = entry.split(':')
    const id = rest.join(':')
    if (skip.has(id)) continue
    if (kind === 'enter') {
      if (holder !== null) overlaps.push(`${id} entered while ${holder} held the key`)
      holder = id
    } else if (holder === id) {
      holder = null
    }
  }
  return overlaps
}

const topologies = {
  cluster: {
    start: startCluster,
    options: (topology) => ({ clusterNodes: topology.urls.slice(0, 3) }),
    /** redis-cli -c follows MOVED, so any node answers for any key. */
    cli: (topology, ...args) => redisCli(['-c', '-p', String(topology.nodes[0].port), ...args]),
    async keyCount(topology, pattern) {
      let total = 0
      for (const node of await topology.masters()) {
        const out = await node.cli('--scan', '--pattern', pattern)
        total += out ? out.split('\n').length : 0
      }
      return total
    },
    async failover(topology) {
      const replica = (await topology.replicas())[0]
      await replica.cli('cluster', 'failover')
      await waitUntil(async () => (await replica.cli('role')).startsWith('master'), 'the replica to take over')
    },
  },
  sentinel: {
    start: startSentinel,
    options: (topology) => ({
      redisUrl: 'redis://127.0.0.1:1', // only credentials and db would come from here: the master comes from the sentinels
      redisOptions: { sentinels: topology.sentinelAddresses, name: topology.name },
    }),
    cli: async (topology, ...args) => redisCli(['-p', String(await topology.currentMaster()), ...args]),
    async keyCount(topology, pattern) {
      const out = await redisCli(['-p', String(await topology.currentMaster()), '--scan', '--pattern', pattern])
      return out ? out.split('\n').length : 0
    },
    async failover(topology) {
      const before = await topology.currentMaster()
      await topology.sentinels[0].cli('sentinel', 'failover', topology.name)
      await waitUntil(async () => (await topology.currentMaster()) !== before, 'the sentinels to promote the replica')
    },
  },
}

for (const [name, kind] of Object.entries(topologies)) {
  describe(`on ${name}`, { timeout: 180_000 }, () => {
    let topology
    let locks
    let seq = 0
    const ns = () => `${name}${++seq}:`

    before(async () => {
      topology = await kind.start()
      locks = await LockingModuleService.connect(kind.options(topology))
    })

    after(async () => {
      await locks?.close()
      await topology?.stop()
    })

    test('acquire, conflict with Medusa\'s message, re-entry, release', async () => {
      const namespace = ns()
      const service = await LockingModuleService.connect({ ...kind.options(topology), namespace })
      await service.acquire('k', { ownerId: 'me', expire: 30 })
      assert.equal(await kind.cli(topology, 'get', `${namespace}k`), 'me')
      await assert.rejects(service.acquire('k', { ownerId: 'other' }), { message: 'Failed to acquire lock for key "k"', code: 'LOCK_CONFLICT' })
      await service.acquire('k', { ownerId: 'me', expire: 30 })
      assert.equal(await service.release('k', { ownerId: 'me' }), true)
      assert.equal(await kind.keyCount(topology, `${namespace}*`), 0)
      await service.close()
    })

    test('listLocks and fencing tokens cover every master', async () => {
      const namespace = ns()
      const service = await LockingModuleService.connect({ ...kind.options(topology), namespace })
      const keys = Array.from({ length: 12 }, (_, i) => `fenced-${i}`)
      const first = await service.acquire(keys, { ownerId: 'me', expire: 30 })
      assert.deepEqual(Object.keys(first), keys)
      const listed = (await service.listLocks()).map((lock) => lock.key).sort()
      assert.deepEqual(listed, [...keys].sort())
      assert.deepEqual((await service.listLocks({ ownerId: 'me', pattern: 'fenced-1*' })).map((l) => l.key).sort(), ['fenced-1', 'fenced-10', 'fenced-11'])
      await service.release(keys, { ownerId: 'me' })
      const second = await service.acquire(keys, { ownerId: 'other', expire: 30 })
      for (const key of keys) assert.ok(second[key] > first[key], `${key}: ${second[key]} > ${first[key]}`)
      await service.releaseAll({ ownerId: 'other' })
      await service.close()
    })

    test('multi-key acquire spanning every master is all-or-nothing, with no CROSSSLOT error', async () => {
      const namespace = ns()
      const service = await LockingModuleService.connect({ ...kind.options(topology), namespace })
      // Enough keys to land in many slots, and on every master of a cluster.
      const keys = Array.from({ length: 12 }, (_, i) => `item-${i}`)
      await service.acquire('item-7', { ownerId: 'other' })
      await assert.rejects(service.acquire(keys, { ownerId: 'me' }), { message: 'Failed to acquire lock for key "item-7"' })
      assert.equal(await kind.keyCount(topology, `${namespace}*`), 1, 'only the other owner\'s key is held')
      await service.release('item-7', { ownerId: 'other' })
      await service.acquire(keys, { ownerId: 'me', expire: 30 })
      assert.equal(await kind.keyCount(topology, `${namespace}*`), keys.length)
      if (name === 'cluster') {
        let mastersUsed = 0
        for (const master of await topology.masters()) {
          if (await master.cli('--scan', '--pattern', `${namespace}*`)) mastersUsed++
        }
        assert.equal(mastersUsed, 3, 'the keys span all three masters')
      }
      // A re-entered key survives a rolled-back multi-slot attempt.
      await service.acquire('blocker', { ownerId: 'other' })
      await assert.rejects(service.acquire([...keys, 'blocker'], { ownerId: 'me' }), { code: 'LOCK_CONFLICT' })
      assert.equal(await kind.keyCount(topology, `${namespace}*`), keys.length + 1)
      await service.releaseAll({ ownerId: 'me' })
      await service.releaseAll({ ownerId: 'other' })
      assert.equal(await kind.keyCount(topology, `${namespace}*`), 0, 'releaseAll covers every master')
      await service.acquire(['x', 'y', 'z'])
      await service.releaseAll()
      assert.equal(await kind.keyCount(topology, `${namespace}*`), 0)
      await service.close()
    })

    test('a multi-key execute spanning every master, and ABBA callers, complete', async () => {
      const namespace = ns()
      const service = await LockingModuleService.connect({ ...kind.options(topology), namespace })
      const keys = Array.from({ length: 12 }, (_, i) => `order-${i}`)
      const seen = await service.execute(keys, async () => kind.keyCount(topology, `${namespace}*`))
      assert.equal(seen, keys.length)
      const run = (order) => (async () => {
        for (let i = 0; i < 40; i++) await service.execute(order, () => sleep(0), { timeout: 10 })
      })()
      await Promise.all([run(['a', 'b', 'c']), run(['c', 'b', 'a']), run(['b', 'a', 'c'])])
      assert.equal(await kind.keyCount(topology, `${namespace}*`), 0)
      await service.close()
    })

    test('a release wakes a waiter polling only every 15–30 s', async () => {
      const namespace = ns()
      const holder = await LockingModuleService.connect({ ...kind.options(topology), namespace })
      const waiter = await LockingModuleService.connect({
        ...kind.options(topology),
        namespace,
        defaultRetryInterval: 30000,
        maximumRetryInterval: 30000,
      })
      await holder.acquire('k', { ownerId: 'holder' })
      const waiting = waiter.acquire('k', { ownerId: 'waiter', awaitQueue: true, timeout: 60 })
      await sleep(300)
      await holder.release('k', { ownerId: 'holder' })
      const started = Date.now()
      await waiting
      assert.ok(Date.now() - started < 5000, 'woken by the release')
      assert.equal(await kind.cli(topology, 'get', `${namespace}k`), 'waiter')
      await waiter.release('k', { ownerId: 'waiter' })
      await holder.close()
      await waiter.close()
    })

    test('waitForReplicas: a grant counts once replicas acknowledged it, else nothing stays held', async () => {
      const namespace = ns()
      const durable = await LockingModuleService.connect({ ...kind.options(topology), namespace, waitForReplicas: 1 })
      await durable.acquire(['a', 'b', 'c'], { ownerId: 'me', expire: 30 })
      assert.equal(await durable.execute('d', async () => 'ran'), 'ran')
      assert.equal(await kind.keyCount(topology, `${namespace}*`), 3)
      await durable.releaseAll({ ownerId: 'me' })
      // Each master has one replica: two acknowledgements never come.
      const impossible = await LockingModuleService.connect({ ...kind.options(topology), namespace, waitForReplicas: 2, waitForReplicasTimeout: 200 })
      await assert.rejects(impossible.acquire(['a', 'b', 'c'], { ownerId: 'me' }), (error) => {
        assert.equal(error.code, 'REDIS_ERROR')
        assert.match(error.message, /only 1 of 2 replicas acknowledged/)
        return true
      })
      assert.equal(await kind.keyCount(topology, `${namespace}*`), 0, 'the unacknowledged grant was given back')
      await durable.close()
      await impossible.close()
    })

    test(`a manual failover under 4 processes of execute: no overlap among kept leases, losses signalled, service recovers`, async () => {
      const logServer = await startRedis()
      try {
        const namespace = ns()
        const logKey = 'failover:log'
        const lockOptions = { ...kind.options(topology), namespace, redisOptions: { ...kind.options(topology).redisOptions, commandTimeout: 1000, connectTimeout: 1000 } }
        const configs = Array.from({ length: 4 }, () => ({ lockOptions, logUrl: logServer.url, logKey, key: 'hot', callers: 3, iterations: 150, maxJobMs: 5 }))
        const probe = await LockingModuleService.connect(lockOptions)
        const running = runWorkers(path.join(__dirname, 'workers', 'failover-worker.js'), configs, { timeoutMs: 150_000 })
        await sleep(1500)
        const failoverAt = Date.now()
        await kind.failover(topology)
        // Recovery: the same service object (created before the failover) works again.
        let recoveredAt
        for (;;) {
          try {
            await probe.acquire('probe', { ownerId: 'probe', expire: 5 })
            await probe.release('probe', { ownerId: 'probe' })
            recoveredAt = Date.now()
            break
          } catch {
            await sleep(50)
          }
        }
        const { reports } = await running
        const lost = reports.flatMap((report) => report.lost)
        const completed = reports.reduce((sum, report) => sum + report.completed, 0)
        const failures = reports.map((report) => report.failures)
        const raw = await logServer.cli('lrange', logKey, '0', '-1')
        const entries = raw ? raw.split('\n') : []
        const overlaps = overlapsAmong(entries, lost)
        console.log(`# ${name} failover: ${completed} completed of ${4 * 3 * 150}, ${lost.length} leases reported lost, failures ${JSON.stringify(failures)}, recovered ${recoveredAt - failoverAt} ms after the failover started, ${overlaps.length} overlaps`)
        assert.deepEqual(overlaps.slice(0, 5), [], 'no two kept leases overlapped')
        assert.ok(reports.every((report) => report.lastCompletedAt > failoverAt), 'every process kept completing jobs after the failover')
        // Every job is accounted for: completed with its lease kept, lease lost, or a reported failure.
        const failed = failures.reduce((sum, f) => sum + Object.values(f).reduce((a, b) => a + b, 0), 0)
        assert.equal(completed + lost.length + failed, 4 * 3 * 150)
        await probe.close()
      } finally {
        await logServer.stop()
      }
    })
  })
}
