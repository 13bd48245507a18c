'use strict'
// A TCP proxy for fault tests: sits between a client and Redis and can stall
// the traffic (a network partition that keeps the sockets open), cut every
// connection, refuse or blackhole new ones, and resume. Nothing here knows
// Redis: it forwards bytes.

const net = require('node:net')

/**
 * One client connection and its upstream socket. While the proxy is stalled,
 * bytes (and a close) in either direction are held back in order, as a
 * partition would, and delivered on resume().
 */
class Link {
  constructor(proxy, client) {
    this.proxy = proxy
    this.client = client
    this.upstream = null
    this.closed = false
    this.toUpstream = [] // Buffers, or null for "the client closed"
    this.toClient = []
    client.setNoDelay(true)
    client.on('data', (chunk) => this.#send('toUpstream', chunk))
    client.on('end', () => this.#send('toUpstream', null))
    client.on('error', () => this.destroy())
    client.on('close', () => this.#send('toUpstream', null))
  }

  /** Opens the upstream socket (not for blackholed connections). */
  connectUpstream() {
    const upstream = net.connect({ host: this.proxy.targetHost, port: this.proxy.targetPort })
    this.upstream = upstream
    upstream.setNoDelay(true)
    upstream.on('connect', () => this.flush())
    upstream.on('data', (chunk) => this.#send('toClient', chunk))
    upstream.on('end', () => this.#send('toClient', null))
    upstream.on('error', () => this.#send('toClient', null))
    upstream.on('close', () => this.#send('toClient', null))
  }

  #send(direction, chunk) {
    if (this.closed) return
    this[direction].push(chunk)
    this.flush()
  }

  /** Delivers what is held back, unless the proxy (or this link) is stalled. */
  flush() {
    if (this.closed || this.proxy.stalled || this.blackholed) return
    if (this.upstream === null || this.upstream.connecting) return
    for (const [direction, target] of [
      ['toUpstream', this.upstream],
      ['toClient', this.client],
    ]) {
      const queue = this[direction]
      while (queue.length > 0) {
        const chunk = queue.shift()
        if (chunk === null) {
          // One side went away: so does the other, after what it sent.
          this.destroy({ graceful: true })
          return
        }
        target.write(chunk)
      }
    }
  }

  destroy({ graceful = false, reset = false } = {}) {
    if (this.closed) return
    this.closed = true
    this.proxy.links.delete(this)
    for (const socket of [this.client, this.upstream]) {
      if (socket === null) continue
      if (graceful) socket.end()
      else if (reset && typeof socket.resetAndDestroy === 'function') socket.resetAndDestroy()
      else socket.destroy()
    }
  }
}

class TcpProxy {
  constructor(targetPort, targetHost) {
    this.targetPort = targetPort
    this.targetHost = targetHost
    this.links = new Set()
    this.stalled = false
    /** What happens to new connections: 'forward', 'refuse' or 'blackhole'. */
    this.mode = 'forward'
    this.accepted = 0
    this.server = net.createServer((client) => this.#accept(client))
  }

  #accept(client) {
    this.accepted += 1
    if (this.mode === 'refuse') {
      // Accepted by the kernel already: reset it at once (ECONNRESET for the client).
      client.on('error', () => {})
      if (typeof client.resetAndDestroy === 'function') client.resetAndDestroy()
      else client.destroy()
      return
    }
    const link = new Link(this, client)
    this.links.add(link)
    if (this.mode === 'blackhole') {
      // The TCP handshake completed, but nothing is ever forwarded or answered.
      link.blackholed = true
      return
    }
    link.connectUpstream()
  }

  /** Port the clients connect to. */
  get port() {
    return this.server.address().port
  }

  get url() {
    return `redis://127.0.0.1:${this.port}`
  }

  /** Number of open client connections. */
  get connections() {
    return this.links.size
  }

  /** Stops forwarding in both directions; sockets stay open, bytes are held back. */
  stall() {
    this.stalled = true
  }

  /** Delivers what was held back and forwards again; new connections are forwarded. */
  resume() {
    this.stalled = false
    this.mode = 'forward'
    for (const link of [...this.links]) {
      if (link.blackholed) link.destroy()
      else link.flush()
    }
  }

  /** Destroys every current connection (both sides), dropping what was held back. */
  cut({ reset = false } = {}) {
    for (const link of [...this.links]) link.destroy({ reset })
  }

  /** New connections are reset as soon as they are accepted. */
  refuse() {
    this.mode = 'refuse'
  }

  /** New connections are accepted and then get no answer, ever. */
  blackhole() {
    this.mode = 'blackhole'
  }

  /** Closes the listening socket and every connection. */
  close() {
    this.cut()
    return new Promise((resolve) => this.server.close(() => resolve()))
  }
}

/**
 * Starts a proxy on a free port of 127.0.0.1 in front of `targetPort`.
 * `{ port, url, stall(), resume(), cut(), refuse(), blackhole(), close(), connections }`.
 */
async function startProxy({ targetPort, targetHost = '127.0.0.1', port = 0 } = {}) {
  const proxy = new TcpProxy(targetPort, targetHost)
  await new Promise((resolve, reject) => {
    proxy.server.once('error', reject)
    proxy.server.listen(port, '127.0.0.1', () => {
      proxy.server.off('error', reject)
      resolve()
    })
  })
  // A test that forgets close() must not keep Node alive.
  proxy.server.unref()
  return proxy
}

module.exports = { startProxy, TcpProxy }
