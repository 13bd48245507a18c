'use strict'
// `npm test`: the engine's Rust tests (every test binary, --no-fail-fast),
// then the node:test suites, one file at a time (each starts its own
// redis-server processes). Exits non-zero if either fails. `--js-only` skips
// cargo; file arguments narrow the JS run.

const { spawnSync } = require('node:child_process')
const fs = require('node:fs')
const path = require('node:path')

const root = path.join(__dirname, '..')
const args = process.argv.slice(2)
const jsOnly = args.includes('--js-only')
let testFiles = args.filter((a) => a !== '--js-only')
if (testFiles.length === 0) {
  testFiles = fs
    .readdirSync(path.join(root, '__test__'))
    .filter((f) => /\.test\.[cm]?js$/.test(f))
    .sort()
    .map((f) => path.join('__test__', f))
}

function run(command, commandArgs) {
  console.log(`\n> ${command} ${commandArgs.join(' ')}`)
  const { status, signal, error } = spawnSync(command, commandArgs, { cwd: root, stdio: 'inherit' })
  if (error) console.error(`${command}: ${error.message}`)
  return status === 0 && !signal && !error
}

const failed = []
if (!jsOnly && !run('cargo', ['test', '--no-fail-fast'])) failed.push('cargo test')
if (!run(process.execPath, ['--test', '--test-concurrency=1', ...testFiles])) failed.push('node --test')

if (failed.length > 0) {
  console.error(`\nFAILED: ${failed.join(', ')}`)
  process.exit(1)
}
console.log('\nAll tests passed.')
