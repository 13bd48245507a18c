'use strict'
// Builds the addon (npm run build) when binding.js or the .node file is
// missing or older than the Rust sources, so `npm test` and `npm run demo`
// work on a fresh clone.

const { spawnSync } = require('node:child_process')
const fs = require('node:fs')
const path = require('node:path')

const root = path.join(__dirname, '..')

function mtimeMs(file) {
  try {
    return fs.statSync(file).mtimeMs
  } catch {
    return undefined
  }
}

function newestUnder(dir) {
  let newest = 0
  for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
    const full = path.join(dir, entry.name)
    newest = Math.max(newest, entry.isDirectory() ? newestUnder(full) : mtimeMs(full))
  }
  return newest
}

function buildReason() {
  const addons = fs.readdirSync(root).filter((f) => /^ferrolock\..+\.node$/.test(f))
  const outputs = ['binding.js', ...addons].map((f) => mtimeMs(path.join(root, f)))
  if (addons.length === 0 || outputs.includes(undefined)) return 'binding.js or ferrolock.*.node is missing'
  const sources = Math.max(
    newestUnder(path.join(root, 'src')),
    ...['Cargo.toml', 'Cargo.lock', 'build.rs'].map((f) => mtimeMs(path.join(root, f)) ?? 0),
  )
  if (Math.min(...outputs) < sources) return 'the Rust sources changed since the last build'
  return null
}

const reason = buildReason()
if (reason) {
  console.log(`ensure-built: ${reason}; running npm run build`)
  const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm'
  const { status, error } = spawnSync(npm, ['run', 'build'], { cwd: root, stdio: 'inherit' })
  if (error) throw error
  if (status !== 0) process.exit(status ?? 1)
}
