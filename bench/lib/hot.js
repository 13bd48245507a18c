'use strict'
// Analysis of a hot-key run (W3, W4): every job's call / start / end time and
// its caller, from one or several processes, on the comparable clock of
// common.now(). The critical section is the job itself, so the start and end
// times are taken inside it.

const { percentile } = require('./common')

/**
 * jobs: [{ c: caller id, call, start, end }] (ms); timeouts: [{ c, call, at }];
 * ws / we: measurement window (ms). Throughput, hand-off and same-caller
 * figures use the jobs that started inside the window; waits use every call
 * whose wait overlapped the window (calls still waiting at its end finish
 * during the drain, so their wait is real but measured with fewer rivals).
 */
function analyzeHot({ jobs, timeouts = [], ws, we }) {
  const sorted = jobs.slice().sort((a, b) => a.start - b.start)
  let overlaps = 0
  for (let i = 1; i < sorted.length; i++) if (sorted[i].start < sorted[i - 1].end) overlaps++

  const win = sorted.filter((j) => j.start >= ws && j.start < we)
  const handoffs = []
  let sameCaller = 0
  for (let i = 1; i < win.length; i++) {
    if (win[i].c === win[i - 1].c) sameCaller++
    else handoffs.push(win[i].start - win[i - 1].end)
  }
  let busy = 0
  for (const j of sorted) busy += Math.max(0, Math.min(j.end, we) - Math.max(j.start, ws))

  const waits = sorted.filter((j) => j.call < we && j.start >= ws).map((j) => j.start - j.call)
  for (const t of timeouts) if (t.call < we && t.at >= ws) waits.push(t.at - t.call)
  const waitingAtEnd = sorted.filter((j) => j.call < we && j.start >= we).length
  const seconds = (we - ws) / 1000
  const callers = new Set(win.map((j) => j.c))

  return {
    executesPerSec: win.length / seconds,
    executes: win.length,
    handoffP50Ms: percentile(handoffs, 50),
    handoffP99Ms: percentile(handoffs, 99),
    crossCallerHandoffs: handoffs.length,
    sameCallerFraction: win.length > 1 ? sameCaller / (win.length - 1) : null,
    busyFraction: busy / (we - ws),
    jobP50Ms: percentile(win.map((j) => j.end - j.start), 50),
    longestWaitMs: waits.length ? waits.reduce((a, b) => Math.max(a, b), -Infinity) : null,
    waitP50Ms: percentile(waits, 50),
    waitP99Ms: percentile(waits, 99),
    waitingAtWindowEnd: waitingAtEnd,
    callersServedInWindow: callers.size,
    overlaps,
    timeouts: timeouts.length,
  }
}

module.exports = { analyzeHot }
