'use strict'
// Runs worker processes in lockstep for the demo and the multi-process tests.
// A worker gets its config as JSON in argv[2], sends any message when ready,
// waits for 'go', sends its report (any object), disconnects and exits 0.

const { fork } = require('node:child_process')

/**
 * Forks one worker per config, releases them together, and resolves to
 * `{ reports, ms }` (ms from 'go' until the last worker exited). Rejects if a
 * worker fails or has not exited after `timeoutMs` (then all are killed).
 */
async function runWorkers(file, configs, { timeoutMs = 90_000 } = {}) {
  const workers = configs.map((cfg) => {
    const child = fork(file, [JSON.stringify(cfg)], { stdio: 'inherit' })
    let report
    const exited = new Promise((resolve) => child.once('exit', (code, signal) => resolve(code ?? signal)))
    const failed = (status) =>
      new Error(`worker ${child.pid} (${file}) exited with ${status}${report ? '' : ' before reporting'}`)
    const ready = new Promise((resolve, reject) => {
      child.once('message', () => {
        child.once('message', (msg) => (report = msg))
        resolve()
      })
      exited.then((status) => reject(failed(status)))
    })
    const done = exited.then((status) => (status === 0 && report ? report : Promise.reject(failed(status))))
    done.catch(() => {}) // awaited below, unless a worker already failed to get ready
    return { child, ready, done }
  })
  const timer = setTimeout(() => {
    for (const { child } of workers) child.kill('SIGKILL')
  }, timeoutMs)
  try {
    await Promise.all(workers.map((w) => w.ready))
    const started = Date.now()
    for (const { child } of workers) child.send('go')
    const reports = await Promise.all(workers.map((w) => w.done))
    return { reports, ms: Date.now() - started }
  } catch (err) {
    for (const { child } of workers) child.kill('SIGKILL')
    throw err
  } finally {
    clearTimeout(timer)
  }
}

module.exports = { runWorkers }
