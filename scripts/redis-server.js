'use strict'
// Starts throwaway redis-server processes for tests and the demo: each on its
// own free port and temp dir, stopped by pid, and killed on process exit so
// nothing is left behind.

const { spawn, spawnSync, execFile } = require('node:child_process')
const fs = require('node:fs')
const net = require('node:net')
const os = require('node:os')
const tls = require('node:tls')
const path = require('node:path')

const READY_TIMEOUT_MS = 10_000
const STOP_GRACE_MS = 2_000
const START_ATTEMPTS = 5

const running = new Set()

function killAllOnExit() {
  for (const server of running) {
    try {
      process.kill(server.pid, 'SIGKILL')
    } catch {}
    fs.rmSync(server.dir, { recursive: true, force: true })
  }
  running.clear()
}
process.on('exit', killAllOnExit)
// Without a listener SIGINT/SIGTERM end Node without running 'exit' hooks.
for (const signal of ['SIGINT', 'SIGTERM']) {
  process.once(signal, () => {
    killAllOnExit()
    process.kill(process.pid, signal)
  })
}

function freePort() {
  return new Promise((resolve, reject) => {
    const probe = net.createServer()
    probe.unref()
    probe.on('error', reject)
    probe.listen(0, '127.0.0.1', () => {
      const { port } = probe.address()
      probe.close(() => resolve(port))
    })
  })
}

/**
 * Resolves once a Redis answers PING on 127.0.0.1:port (+PONG, or NOAUTH when
 * it requires a password). With `tlsFiles` ({ cert, key } of a client, both
 * optional), over TLS without checking the server's certificate.
 */
function ping(port, timeoutMs = 500, tlsFiles) {
  return new Promise((resolve) => {
    const socket = tlsFiles
      ? tls.connect({
          port,
          host: '127.0.0.1',
          rejectUnauthorized: false,
          cert: tlsFiles.clientCert && fs.readFileSync(tlsFiles.clientCert),
          key: tlsFiles.clientKey && fs.readFileSync(tlsFiles.clientKey),
        })
      : net.connect({ port, host: '127.0.0.1' })
    let reply = ''
    const done = (ok) => {
      socket.destroy()
      resolve(ok)
    }
    socket.setTimeout(timeoutMs, () => done(false))
    socket.on('error', () => done(false))
    socket.on(tlsFiles ? 'secureConnect' : 'connect', () => socket.write('PING\r\n'))
    socket.on('data', (chunk) => {
      reply += chunk
      if (reply.includes('\r\n')) done(reply.startsWith('+PONG') || reply.startsWith('-NOAUTH'))
    })
  })
}

let setprivFound
function hasSetpriv() {
  setprivFound ??= spawnSync('setpriv', ['--pdeathsig', 'KILL', 'true']).status === 0
  return setprivFound
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms))

/**
 * Spawns redis-server on `port` in `dir` and waits for PING.
 * Resolves to the child, or rejects (after killing it) with the log tail.
 */
async function spawnServer({ port, dir, args, conf, tls: tlsFiles }) {
  // Else the PING below could be answered by someone else's server.
  if ((await ping(port)) || (tlsFiles && (await ping(port, 500, tlsFiles)))) {
    throw new Error(`port ${port} is already taken by a Redis`)
  }
  const logFile = path.join(dir, 'redis.log')
  const argv = []
  if (conf !== undefined) {
    const confFile = path.join(dir, 'redis.conf')
    fs.writeFileSync(confFile, conf)
    argv.push(confFile)
  }
  const listen = tlsFiles
    ? [
        '--port', '0',
        '--tls-port', String(port),
        '--tls-cert-file', tlsFiles.cert,
        '--tls-key-file', tlsFiles.key,
        '--tls-ca-cert-file', tlsFiles.ca,
        '--tls-auth-clients', tlsFiles.authClients ? 'yes' : 'no',
      ]
    : ['--port', String(port)]
  argv.push(
    ...listen,
    '--bind', '127.0.0.1',
    '--save', '',
    '--appendonly', 'no',
    '--dir', dir,
    '--logfile', logFile,
    ...args,
  )
  // setpriv makes the kernel kill redis-server if we die before our exit hook
  // runs (kill -9, or a throwing 'exit' listener); it execs, so the pid is redis'.
  const child = hasSetpriv()
    ? spawn('setpriv', ['--pdeathsig', 'KILL', 'redis-server', ...argv], { cwd: dir, stdio: 'ignore' })
    : spawn('redis-server', argv, { cwd: dir, stdio: 'ignore' })
  // A test that forgets stop() must not keep Node alive; the exit hook kills it.
  child.unref()
  let exited = null
  let spawnError = null
  child.on('error', (err) => {
    spawnError = err
  })
  child.on('exit', (code, signal) => {
    exited = { code, signal }
  })

  const deadline = Date.now() + READY_TIMEOUT_MS
  while (Date.now() < deadline) {
    if (spawnError) throw new Error(`cannot run redis-server: ${spawnError.message}`)
    if (exited) break
    if (await ping(port, 500, tlsFiles)) return child
    await sleep(25)
  }
  try {
    child.kill('SIGKILL')
  } catch {}
  let log = ''
  try {
    log = fs.readFileSync(logFile, 'utf8').split('\n').slice(-10).join('\n')
  } catch {}
  const why = exited ? `exited (${exited.code ?? exited.signal})` : 'did not answer PING'
  throw new Error(`redis-server on port ${port} ${why}\n${log}`)
}

function waitExit(child, pid, ms) {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve(true)
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(!isAlive(pid)), ms)
    child.once('exit', () => {
      clearTimeout(timer)
      resolve(true)
    })
  })
}

function isAlive(pid) {
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}

/**
 * Starts a redis-server and resolves to a handle:
 * `{ port, url, pid, dir, cli(...args), stop(), crash(), restart() }`.
 *
 * Options: `port` (default: a free one), `args` (extra redis-server
 * arguments, e.g. `['--cluster-enabled', 'yes']`), `conf` (text written to
 * redis.conf and passed first, for sentinel and friends), `tls` (PEM file
 * paths `{ cert, key, ca }`, plus `authClients: true` and the `clientCert`
 * and `clientKey` it then takes): the server listens on `port` with TLS
 * only, `url` is `rediss://…` and `cli()` speaks TLS.
 */
async function startRedis({ port, args = [], conf, tls: tlsFiles } = {}) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ferrolock-redis-'))
  let child
  // A free port can be taken between the probe and redis' bind: try another.
  for (let attempt = 1; ; attempt++) {
    const tryPort = port ?? (await freePort())
    try {
      child = await spawnServer({ port: tryPort, dir, args, conf, tls: tlsFiles })
      port = tryPort
      break
    } catch (err) {
      if (port !== undefined || attempt >= START_ATTEMPTS) {
        fs.rmSync(dir, { recursive: true, force: true })
        throw err
      }
    }
  }

  const server = {
    port,
    url: `${tlsFiles ? 'rediss' : 'redis'}://127.0.0.1:${port}`,
    dir,
    get pid() {
      return child.pid
    },
    /** Runs `redis-cli -p port ...args`; resolves to its trimmed stdout. */
    cli(...cliArgs) {
      const tlsArgs = tlsFiles
        ? ['--tls', '--cacert', tlsFiles.ca, ...(tlsFiles.clientCert ? ['--cert', tlsFiles.clientCert, '--key', tlsFiles.clientKey] : [])]
        : []
      return new Promise((resolve, reject) => {
        execFile('redis-cli', [...tlsArgs, '-h', '127.0.0.1', '-p', String(port), ...cliArgs], (err, stdout, stderr) => {
          if (err) reject(new Error(`redis-cli ${cliArgs.join(' ')}: ${stderr || err.message}`))
          else resolve(stdout.trim())
        })
      })
    },
    /** kill -9, keeping the port and dir for restart(). */
    async crash() {
      const pid = child.pid
      try {
        child.kill('SIGKILL')
      } catch {}
      await waitExit(child, pid, STOP_GRACE_MS)
    },
    /** Crashes the server (if running) and starts a fresh one on the same port. */
    async restart() {
      await server.crash()
      // The old socket may linger for a moment after kill -9.
      for (let attempt = 1; ; attempt++) {
        try {
          child = await spawnServer({ port, dir, args, conf, tls: tlsFiles })
          return server
        } catch (err) {
          if (attempt >= START_ATTEMPTS) throw err
          await sleep(100 * attempt)
        }
      }
    },
    /** SIGTERM, SIGKILL after a short wait, then removes the temp dir. */
    async stop() {
      running.delete(server)
      const pid = child.pid
      try {
        child.kill('SIGTERM')
      } catch {}
      if (!(await waitExit(child, pid, STOP_GRACE_MS))) {
        try {
          child.kill('SIGKILL')
        } catch {}
        await waitExit(child, pid, STOP_GRACE_MS)
      }
      fs.rmSync(dir, { recursive: true, force: true })
    },
  }
  running.add(server)
  return server
}

module.exports = { startRedis, freePort, ping }
