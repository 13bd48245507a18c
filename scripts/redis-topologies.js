'use strict'
// Test topologies built from throwaway redis-server processes (see
// redis-server.js): a Redis Cluster of 3 masters + 3 replicas, and a master
// + replica watched by 3 sentinels. Every process is stopped by pid.

const { execFile } = require('node:child_process')
const { startRedis } = require('./redis-server')

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

function redisCli(args) {
  return new Promise((resolve, reject) => {
    execFile('redis-cli', args, (error, stdout, stderr) => (error ? reject(new Error(`redis-cli ${args.join(' ')}: ${stderr || error.message}`)) : resolve(stdout.trim())))
  })
}

async function waitUntil(check, what, timeoutMs = 20_000) {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    try {
      if (await check()) return
    } catch {}
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await sleep(100)
  }
}

/**
 * 3 masters + 3 replicas (`redis-cli --cluster create --cluster-replicas 1`).
 * Resolves to `{ nodes, urls, masters(), replicas(), stop() }`; `nodes` are startRedis handles.
 */
async function startCluster() {
  const nodes = []
  try {
    for (let i = 0; i < 6; i++) {
      nodes.push(await startRedis({
        args: ['--cluster-enabled', 'yes', '--cluster-config-file', 'nodes.conf', '--cluster-node-timeout', '2000'],
      }))
    }
    await redisCli(['--cluster', 'create', ...nodes.map((node) => `127.0.0.1:${node.port}`), '--cluster-replicas', '1', '--cluster-yes'])
    for (const node of nodes) {
      await waitUntil(async () => (await node.cli('cluster', 'info')).includes('cluster_state:ok'), `cluster state ok on ${node.port}`)
    }
    // Replicas must have synced before a failover test can promote them.
    await waitUntil(async () => {
      for (const node of nodes) {
        const role = await node.cli('role')
        if (role.startsWith('slave') && !role.includes('connected')) return false
      }
      return true
    }, 'replicas in sync')
  } catch (error) {
    await Promise.all(nodes.map((node) => node.stop()))
    throw error
  }
  const byRole = async (role) => {
    const out = []
    for (const node of nodes) if ((await node.cli('role')).startsWith(role)) out.push(node)
    return out
  }
  return {
    nodes,
    urls: nodes.map((node) => node.url),
    masters: () => byRole('master'),
    replicas: () => byRole('slave'),
    stop: () => Promise.all(nodes.map((node) => node.stop())),
  }
}

/**
 * A master, one replica and 3 sentinels monitoring them as `mymaster`.
 * Resolves to `{ master, replica, sentinels, name, sentinelAddresses, currentMaster(), stop() }`.
 */
async function startSentinel({ name = 'mymaster' } = {}) {
  const servers = []
  try {
    const master = await startRedis()
    servers.push(master)
    const replica = await startRedis({ args: ['--replicaof', '127.0.0.1', String(master.port)] })
    servers.push(replica)
    await waitUntil(async () => (await replica.cli('info', 'replication')).includes('master_link_status:up'), 'replica sync')
    const sentinels = []
    for (let i = 0; i < 3; i++) {
      const conf = [
        `sentinel monitor ${name} 127.0.0.1 ${master.port} 2`,
        `sentinel down-after-milliseconds ${name} 1000`,
        `sentinel failover-timeout ${name} 5000`,
        `sentinel parallel-syncs ${name} 1`,
        '',
      ].join('\n')
      const sentinel = await startRedis({ conf, args: ['--sentinel'] })
      servers.push(sentinel)
      sentinels.push(sentinel)
    }
    for (const sentinel of sentinels) {
      await waitUntil(async () => {
        const info = await sentinel.cli('sentinel', 'master', name)
        return /num-other-sentinels\n2/.test(info) && /num-slaves\n1/.test(info)
      }, `sentinel ${sentinel.port} to see its peers and the replica`)
    }
    return {
      master,
      replica,
      sentinels,
      name,
      sentinelAddresses: sentinels.map((sentinel) => ({ host: '127.0.0.1', port: sentinel.port })),
      /** The port the sentinels currently report as master. */
      async currentMaster() {
        const [, port] = (await sentinels[0].cli('sentinel', 'get-master-addr-by-name', name)).split('\n')
        return Number(port)
      },
      stop: () => Promise.all(servers.map((server) => server.stop())),
    }
  } catch (error) {
    await Promise.all(servers.map((server) => server.stop()))
    throw error
  }
}

module.exports = { startCluster, startSentinel, waitUntil }
