'use strict'
// Child process for security.test.js: makes ferrolock fail in every way a
// password can be involved in, and prints everything a user could see — each
// error's message, stack, String(), util.inspect() and JSON, util.inspect()
// of the services, process warnings and every line given to the logger at
// the debug level — as JSON on stdout. The parent greps that, and this
// process's whole stdout and stderr (where anything printed natively would
// land), for the passwords. Each scenario uses its own password.
//
// argv[2]: JSON { plainPort, authPort, tlsPort, otherCaPem, freePort }
//   plainPort: Redis without password; authPort: Redis with requirepass
//   and an ACL user "locker"; tlsPort: TLS-only Redis.

const net = require('node:net')
const util = require('node:util')
const { LockingModuleService } = require('../..')

const cfg = JSON.parse(process.argv[2])
const seen = []
const outcomes = {}
const logLines = []
const warnings = []

process.on('warning', (warning) => warnings.push(util.inspect(warning, { showHidden: true, depth: 5 })))

const logger = {
  error: (message) => logLines.push(`error ${message}`),
  warn: (message) => logLines.push(`warn ${message}`),
  info: (message) => logLines.push(`info ${message}`),
  debug: (message) => logLines.push(`debug ${message}`),
}

function record(error) {
  seen.push(
    String(error?.message),
    String(error?.stack),
    String(error),
    util.inspect(error, { showHidden: true, depth: 10 }),
    JSON.stringify(error),
  )
}

/** Runs `make()` (a service or a promise of one); records what failed and how. */
async function scenario(name, make, use) {
  let service
  try {
    service = await make()
    seen.push(util.inspect(service, { showHidden: true, depth: 10 }))
    if (use) await use(service)
    outcomes[name] = 'ok'
  } catch (error) {
    record(error)
    outcomes[name] = error?.code ?? String(error)
  } finally {
    if (service) {
      seen.push(util.inspect(service, { showHidden: true, depth: 10 }))
      await service.close()
    }
  }
}

const connect = (options) => LockingModuleService.connect(options, { logger, logLevel: 'debug' })
const quick = { connectTimeout: 1000, commandTimeout: 1000 }

async function main() {
  // A server that accepts connections and never answers.
  const silent = net.createServer(() => {})
  await new Promise((resolve) => silent.listen(0, '127.0.0.1', resolve))
  silent.unref()
  const silentPort = silent.address().port

  await scenario('wrong password in the URL', () => connect({ redisUrl: `redis://:pwUrlWrong001@127.0.0.1:${cfg.authPort}` }))
  await scenario('wrong password in redisOptions', () =>
    connect({ redisUrl: `redis://127.0.0.1:${cfg.authPort}`, redisOptions: { password: 'pwOptWrong002' } }),
  )
  await scenario('wrong ACL user password in the URL', () => connect({ redisUrl: `redis://locker:pwUserWrong003@127.0.0.1:${cfg.authPort}` }))
  await scenario('wrong ACL user password in redisOptions', () =>
    connect({ redisUrl: `redis://127.0.0.1:${cfg.authPort}`, redisOptions: { username: 'locker', password: 'pwUserOpt004' } }),
  )
  await scenario('unreachable, password in the URL', () => connect({ redisUrl: `redis://:pwRefused005@127.0.0.1:${cfg.freePort}`, redisOptions: quick }))
  await scenario('silent server, password in redisOptions', () =>
    connect({ redisUrl: `redis://127.0.0.1:${silentPort}`, redisOptions: { ...quick, password: 'pwSilent006' } }),
  )
  await scenario('lazy service, unreachable, password in the URL', async () => new LockingModuleService({ redisUrl: `redis://:pwLazy007@127.0.0.1:${cfg.freePort}` }, { logger, logLevel: 'debug' }), async (service) => {
    const calls = [service.acquire('k', { ownerId: 'o' }), service.release('k'), service.releaseAll(), service.execute('k', () => 1, { timeout: 1 })]
    for (const outcome of await Promise.allSettled(calls)) if (outcome.status === 'rejected') record(outcome.reason)
    throw Object.assign(new Error('calls done'), { code: 'DONE' })
  })
  for (const [i, url] of [
    'redis://:pwMalformed008@[bad',
    'http://user:pwMalformed009@127.0.0.1:6379',
    'redis://:pwMalformed010@127.0.0.1:99999999',
    'rediss//:pwMalformed011@127.0.0.1',
    'redis://:pwMalformed012@127.0.0.1:6379/notadb',
    ' redis://:pwMalformed013@127.0.0.1',
  ].entries()) {
    await scenario(`malformed URL ${i}`, () => connect({ redisUrl: url }))
    try {
      new LockingModuleService({ redisUrl: url })
    } catch (error) {
      record(error)
    }
  }
  await scenario('malformed cluster node URL', () => connect({ clusterNodes: ['redis://:pwCluster014@[bad'] }))
  await scenario('unreachable cluster node', () => connect({ clusterNodes: [`redis://:pwCluster015@127.0.0.1:${cfg.freePort}`], redisOptions: quick }))
  await scenario('unreachable sentinel', () =>
    connect({
      redisUrl: 'redis://:pwSentinelMaster016@127.0.0.1:1',
      redisOptions: { ...quick, sentinels: [{ host: '127.0.0.1', port: cfg.freePort }], name: 'mymaster', sentinelPassword: 'pwSentinel017' },
    }),
  )
  await scenario('TLS with the wrong CA, password in the URL', () =>
    connect({ redisUrl: `rediss://:pwTls018@127.0.0.1:${cfg.tlsPort}`, redisOptions: { ...quick, tls: { ca: cfg.otherCaPem } } }),
  )
  await scenario('plain connection to a TLS port, password in redisOptions', () =>
    connect({ redisUrl: `redis://127.0.0.1:${cfg.tlsPort}`, redisOptions: { ...quick, password: 'pwTlsPlain019' } }),
  )
  // Working connections: the ignored-option warning, debug logs, errors of calls.
  await scenario(
    'connected with a password, unknown options, debug logging',
    () =>
      LockingModuleService.connect(
        { redisUrl: `redis://:pwRight020@127.0.0.1:${cfg.authPort}`, redisOptions: { lazyConnect: true, password: 'pwRight020', showFriendlyErrorStack: true } },
        { logLevel: 'debug' },
      ),
    async (service) => {
      await service.acquire('k', { ownerId: 'o', expire: 5 })
      await service.execute('k2', () => 1)
      await service.acquire('k', { ownerId: 'other' }).catch(record)
      await service.acquire([]).catch(record)
      seen.push(service.metrics(), JSON.stringify(service.stats()))
    },
  )
  await scenario(
    'connected with a password and a logger',
    () => connect({ redisUrl: `redis://:pwRight020@127.0.0.1:${cfg.authPort}`, redisOptions: { retryStrategy: 5 } }),
    async (service) => {
      await service.execute('k3', () => 1, { expire: 2 })
      await service.releaseAll({ ownerId: 'o' })
    },
  )
  // Give late log lines and warnings the time to arrive.
  await new Promise((resolve) => setTimeout(resolve, 300))
  process.stdout.write(`${JSON.stringify({ outcomes, seen, logLines, warnings })}\n`)
}

main().catch((error) => {
  console.error(error)
  process.exitCode = 1
})
