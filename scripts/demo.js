'use strict'
// `npm run demo`: several shop processes sell the last items of a stock, once
// without a lock and once with ferrolock, and count what was oversold.
// Progress is shown while each run goes (a bar redrawn on a terminal, a line
// per second otherwise); a table sums up.
//
// Redis: $LOCKING_REDIS_URL or redis://localhost:6379; if nothing answers
// there (or with --own-redis) a throwaway redis-server is started. Only this
// run's keys (a random prefix) are written, and deleted at the end.

const crypto = require('node:crypto')
const path = require('node:path')
const Redis = require('ioredis')
const { startRedis } = require('./redis-server')
const { runWorkers } = require('./workers')

const PROCESSES = 4
const BUYERS_PER_PROCESS = 5
const STOCK = 50
const ATTEMPTS = 200
const SKU = 'sku-42'
const BAR_WIDTH = 20

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

async function answers(url) {
  const probe = new Redis(url, { lazyConnect: true, connectTimeout: 1000, maxRetriesPerRequest: 0, retryStrategy: () => null })
  probe.on('error', () => {})
  try {
    await probe.connect()
    return (await probe.ping()) === 'PONG'
  } catch {
    return false
  } finally {
    probe.disconnect()
  }
}

/** One progress line: `run [bar] attempts  sold (oversold)  stock  time`. */
function progressLine({ run, attempts, sold, stock, time }) {
  const filled = Math.round((Math.min(attempts, ATTEMPTS) / ATTEMPTS) * BAR_WIDTH)
  const bar = '#'.repeat(filled) + '.'.repeat(BAR_WIDTH - filled)
  const oversold = sold > STOCK ? ` (oversold ${sold - STOCK})` : ''
  return (
    `${run.padEnd(19)} [${bar}] ${String(attempts).padStart(3)}/${ATTEMPTS} attempts  ` +
    `sold ${String(sold).padStart(3)}${oversold}  stock ${String(stock).padStart(2)}  ${time}`
  )
}

/**
 * Shows the progress of a run until `running` settles, from the counters the
 * workers keep in `progressKey`: redrawn every 100 ms on a terminal, a line
 * per second otherwise (CI logs, pipes).
 */
async function showProgress({ redis, run, progressKey, stockKey, running }) {
  const tty = Boolean(process.stdout.isTTY)
  const started = Date.now()
  let finished = false
  const settled = running.then(
    () => (finished = true),
    () => (finished = true),
  )
  while (!finished) {
    await Promise.race([sleep(tty ? 100 : 1000), settled])
    if (finished) break
    let attempts, sold, stock
    try {
      ;[[, [attempts, sold]], [, stock]] = await redis.pipeline().hmget(progressKey, 'attempts', 'sold').get(stockKey).exec()
    } catch {
      continue // the run itself reports what went wrong
    }
    const time = `${((Date.now() - started) / 1000).toFixed(1)} s`
    const line = Number(attempts) > 0
      ? progressLine({ run, attempts: Number(attempts), sold: Number(sold), stock: Number(stock), time })
      : `${run.padEnd(19)} starting ${PROCESSES} processes...  ${time}`
    if (tty) process.stdout.write(`\r${line}\x1b[K`)
    else console.log(line)
  }
  if (tty) process.stdout.write('\r\x1b[K')
}

async function sell({ url, redis, prefix, locked }) {
  const run = locked ? 'ferrolock execute()' : 'no lock'
  const stockKey = `${prefix}stock:${SKU}:${locked ? 'locked' : 'unlocked'}`
  const progressKey = `${prefix}progress:${locked ? 'locked' : 'unlocked'}`
  await redis.set(stockKey, STOCK)
  const perProcess = ATTEMPTS / PROCESSES
  const config = {
    url, locked, namespace: `${prefix}lock:`, stockKey, progressKey, sku: SKU, attempts: perProcess, buyers: BUYERS_PER_PROCESS,
  }
  const running = runWorkers(path.join(__dirname, 'demo-worker.js'), Array(PROCESSES).fill(config))
  await showProgress({ redis, run, progressKey, stockKey, running })
  const { reports, ms } = await running
  const sold = reports.reduce((n, r) => n + r.sold, 0)
  const errors = reports.flatMap((r) => r.errors)
  const row = {
    run,
    sold,
    oversold: Math.max(0, sold - STOCK),
    'final stock': Number(await redis.get(stockKey)),
    errors: errors.length,
    'time (ms)': ms,
    firstError: errors[0],
  }
  const attempts = reports.reduce((n, r) => n + r.sold + r.soldOut, 0) + errors.length
  console.log(
    progressLine({ run, attempts, sold, stock: row['final stock'], time: `${ms} ms` }) +
      (errors.length > 0 ? `  ${errors.length} errors (first: ${errors[0]})` : ''),
  )
  return row
}

function printTable(rows) {
  const columns = ['run', 'sold', 'oversold', 'final stock', 'errors', 'time (ms)']
  const cells = rows.map((row) => columns.map((c) => String(row[c])))
  const widths = columns.map((c, i) => Math.max(c.length, ...cells.map((r) => r[i].length)))
  const line = (values) => '| ' + values.map((v, i) => (i === 0 ? v.padEnd(widths[i]) : v.padStart(widths[i]))).join(' | ') + ' |'
  console.log(line(columns))
  console.log('|' + widths.map((w, i) => (i === 0 ? '-'.repeat(w + 2) : '-'.repeat(w + 1) + ':')).join('|') + '|')
  for (const row of cells) console.log(line(row))
}

async function main() {
  let url = process.env.LOCKING_REDIS_URL || 'redis://localhost:6379'
  let server
  if (process.argv.includes('--own-redis') || !(await answers(url))) {
    server = await startRedis()
    url = server.url
    console.log(`Started a throwaway redis-server on port ${server.port}.`)
  } else {
    console.log(`Using the Redis at ${new URL(url).host}.`)
  }
  const prefix = `ferrolock-demo:${crypto.randomBytes(4).toString('hex')}:`
  const redis = new Redis(url)
  console.log(
    `Stock of ${STOCK}, ${ATTEMPTS} purchase attempts from ${PROCESSES} processes x ${BUYERS_PER_PROCESS} buyers;` +
      ' each purchase reads the stock, waits 1-2 ms, writes stock - 1.\n',
  )

  const rows = []
  try {
    for (const locked of [false, true]) rows.push(await sell({ url, redis, prefix, locked }))
    console.log('')
    printTable(rows)
  } finally {
    const stream = redis.scanStream({ match: `${prefix}*`, count: 1000 })
    for await (const keys of stream) if (keys.length > 0) await redis.del(...keys)
    await redis.quit()
    await server?.stop()
  }

  const locked = rows[1]
  if (locked.sold !== STOCK || locked.oversold !== 0 || locked['final stock'] !== 0 || locked.errors !== 0) {
    console.error('\nferrolock run is wrong: expected exactly the stock sold, nothing oversold, no errors.')
    process.exitCode = 1
  }
}

main().catch((err) => {
  console.error(err)
  process.exitCode = 1
})
