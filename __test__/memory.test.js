'use strict'

// 1,000,000 acquire/release cycles in one child process (64 concurrent
// loops) must not grow its RSS by 10 MB or more, measured after a warm-up of
// 100,000 cycles, with garbage collected (--expose-gc) before each sample.
// V8's young generation is pinned to one size (16 MB semi-spaces): it
// otherwise grows by itself under allocation pressure at some point of the
// run (heapTotal 11 -> 35 MB measured here), a +20 MB step in RSS that is
// V8 sizing its heap, not memory kept by ferrolock. With it pinned, RSS
// compares like with like, and the samples every 250,000 cycles show the trend.

const { test, before, after } = require('node:test')
const assert = require('node:assert/strict')
const path = require('node:path')
const { execFile } = require('node:child_process')
const { startRedis } = require('./helpers/redis')

const WORKER = path.join(__dirname, 'workers', 'memory-worker.js')
const CYCLES = 1_000_000
const MAX_GROWTH_BYTES = 10 * 1024 * 1024

let redis
before(async () => {
  redis = await startRedis()
})
after(async () => {
  await redis?.stop()
})

const mb = (bytes) => (bytes / 1024 / 1024).toFixed(1)

test(`${CYCLES.toLocaleString('en')} acquire/release cycles grow RSS by less than 10 MB`, { timeout: 170_000 }, async (t) => {
  const cfg = { url: redis.url, warmup: 100_000, cycles: CYCLES, step: 250_000, concurrency: 64 }
  const stdout = await new Promise((resolve, reject) => {
    execFile(process.execPath, ['--expose-gc', '--min-semi-space-size=16', '--max-semi-space-size=16', WORKER, JSON.stringify(cfg)], { timeout: 160_000 }, (error, out, err) =>
      error ? reject(new Error(`${error.message}\n${err}`)) : resolve(out),
    )
  })
  const { samples, ms } = JSON.parse(stdout.trim().split('\n').pop())
  for (const s of samples) {
    t.diagnostic(`after ${s.cycles} cycles: rss ${mb(s.rss)} MB, heapTotal ${mb(s.heapTotal)} MB, heapUsed ${mb(s.heapUsed)} MB, external ${mb(s.external)} MB`)
  }
  const growth = samples.at(-1).rss - samples[0].rss
  t.diagnostic(`${CYCLES} cycles in ${ms} ms; RSS growth ${mb(growth)} MB`)
  console.log(`memory: RSS ${mb(samples[0].rss)} -> ${mb(samples.at(-1).rss)} MB over ${CYCLES} cycles (${ms} ms)`)
  assert.equal(samples.at(-1).cycles, CYCLES)
  assert.ok(growth < MAX_GROWTH_BYTES, `RSS grew by ${mb(growth)} MB`)
  assert.equal(await redis.cli('--scan', '--pattern', 'mem:*'), '', 'every lock was released')
})
