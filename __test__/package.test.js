'use strict'
// The package as a user gets it: the root tarball plus this host's
// npm/<platform> tarball, installed offline into a fresh project with no Rust
// toolchain on the PATH, then used from CommonJS, ESM and TypeScript.
//
// The root is staged as `napi prepublish -t npm` (prepublishOnly) publishes
// it: the packed files plus `optionalDependencies` on every platform package
// at the root's version. Only this host's package is given to npm; the others
// are not on the registry (and never in the empty npm cache used here), so
// the install also proves npm skips optional platform packages it cannot get.

const { test, before, after } = require('node:test')
const assert = require('node:assert/strict')
const { spawnSync } = require('node:child_process')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const { parseTriple } = require('@napi-rs/cli')
const { startRedis } = require('./helpers/redis')

const ROOT = path.join(__dirname, '..')
const ROOT_PACKAGE = require('../package.json')
const PACKAGE_NAME = ROOT_PACKAGE.napi.packageName ?? ROOT_PACKAGE.name
const BINARY_NAME = ROOT_PACKAGE.napi.binaryName
const TARGETS = ROOT_PACKAGE.napi.targets.map(parseTriple)
const NPM = process.platform === 'win32' ? 'npm.cmd' : 'npm'
const TSC = require.resolve('typescript/bin/tsc')
const NAPI_LIBC = { gnu: 'glibc', musl: 'musl' }

let work
let redis
let hostTarget
let installTranscript
let app

function readJson(file) {
  return JSON.parse(fs.readFileSync(file, 'utf8'))
}

/** The environment of a user's shell: no `npm run` variables (they point npm at this repo), no Rust. */
function userEnv() {
  const env = {}
  for (const [name, value] of Object.entries(process.env)) {
    if (!/^npm_/i.test(name)) env[name] = value
  }
  const nodeDir = path.dirname(process.execPath)
  const hasRust = (dir) => ['cargo', 'rustc', 'cargo.exe', 'rustc.exe'].some((f) => fs.existsSync(path.join(dir, f)))
  env.PATH = (process.env.PATH ?? '')
    .split(path.delimiter)
    .filter((dir) => dir === nodeDir || !hasRust(dir))
    .join(path.delimiter)
  return env
}

function run(command, args, options) {
  const result = spawnSync(command, args, { encoding: 'utf8', env: userEnv(), timeout: 60_000, ...options })
  const output = `${result.stdout ?? ''}${result.stderr ?? ''}`
  if (result.error || result.status !== 0) {
    throw new Error(`${command} ${args.join(' ')} failed (${result.error?.message ?? result.status}):\n${output}`)
  }
  return { stdout: result.stdout, output }
}

/** `npm pack` in `dir`; returns the tarball's path. */
function pack(dir, destination) {
  const [{ filename }] = JSON.parse(run(NPM, ['pack', '--json', '--pack-destination', destination], { cwd: dir }).stdout)
  return path.join(destination, filename)
}

function hostLibc() {
  if (process.platform !== 'linux') return undefined
  return process.report.getReport().header.glibcVersionRuntime ? 'glibc' : 'musl'
}

/** The configured target this machine runs and has a built addon for, if any. */
function findHostTarget() {
  return TARGETS.find(
    (target) =>
      target.platform === process.platform &&
      target.arch === process.arch &&
      (process.platform !== 'linux' || NAPI_LIBC[target.abi] === hostLibc()) &&
      fs.existsSync(path.join(ROOT, `${BINARY_NAME}.${target.platformArchABI}.node`)),
  )
}

/** The root package exactly as prepublishOnly (`napi prepublish -t npm`) publishes it. */
function stageRootPackage(stage) {
  const [{ files }] = JSON.parse(run(NPM, ['pack', '--dry-run', '--json', '--ignore-scripts'], { cwd: ROOT }).stdout)
  for (const { path: file } of files) {
    fs.mkdirSync(path.dirname(path.join(stage, file)), { recursive: true })
    fs.copyFileSync(path.join(ROOT, file), path.join(stage, file))
  }
  const manifest = readJson(path.join(stage, 'package.json'))
  manifest.optionalDependencies = Object.fromEntries(
    TARGETS.map((target) => [`${PACKAGE_NAME}-${target.platformArchABI}`, ROOT_PACKAGE.version]),
  )
  fs.writeFileSync(path.join(stage, 'package.json'), `${JSON.stringify(manifest, null, 2)}\n`)
}

/** npm/<platform> with the built addon copied in, as `npm run artifacts` (napi artifacts) does. */
function stagePlatformPackage(stage, target) {
  fs.cpSync(path.join(ROOT, 'npm', target.platformArchABI), stage, { recursive: true })
  const addon = `${BINARY_NAME}.${target.platformArchABI}.node`
  fs.copyFileSync(path.join(ROOT, addon), path.join(stage, addon))
}

before(async () => {
  hostTarget = findHostTarget()
  if (!hostTarget) return
  work = fs.mkdtempSync(path.join(os.tmpdir(), 'ferrolock-package-'))
  const tarballs = path.join(work, 'tarballs')
  fs.mkdirSync(tarballs)
  const rootStage = path.join(work, 'root')
  const platformStage = path.join(work, 'platform')
  fs.mkdirSync(rootStage)
  stageRootPackage(rootStage)
  stagePlatformPackage(platformStage, hostTarget)
  const rootTarball = pack(rootStage, tarballs)
  const platformTarball = pack(platformStage, tarballs)

  app = path.join(work, 'app')
  fs.mkdirSync(app)
  fs.writeFileSync(path.join(app, 'package.json'), '{ "name": "scratch", "version": "1.0.0", "private": true }\n')
  installTranscript = run(
    NPM,
    ['install', '--offline', '--no-audit', '--no-fund', '--cache', path.join(work, 'npm-cache'), rootTarball, platformTarball],
    { cwd: app },
  ).output
  redis = await startRedis()
})

after(async () => {
  await redis?.stop()
  if (work) fs.rmSync(work, { recursive: true, force: true })
})

test('every napi target has an npm/<platform> package, named as binding.js requires it', () => {
  const binding = fs.readFileSync(path.join(ROOT, 'binding.js'), 'utf8')
  const expectedDirs = TARGETS.map((target) => target.platformArchABI).sort()
  const dirs = fs
    .readdirSync(path.join(ROOT, 'npm'), { withFileTypes: true })
    .filter((entry) => entry.isDirectory())
    .map((entry) => entry.name)
    .sort()
  assert.deepEqual(dirs, expectedDirs)
  for (const target of TARGETS) {
    const abi = target.platformArchABI
    const manifest = readJson(path.join(ROOT, 'npm', abi, 'package.json'))
    const addon = `${BINARY_NAME}.${abi}.node`
    assert.equal(manifest.name, `${PACKAGE_NAME}-${abi}`)
    assert.equal(manifest.version, ROOT_PACKAGE.version, `${manifest.name} version`)
    assert.equal(manifest.main, addon)
    assert.deepEqual(manifest.files, [addon])
    assert.deepEqual(manifest.os, [target.platform])
    assert.deepEqual(manifest.cpu, [target.arch])
    if (target.platform === 'linux') assert.deepEqual(manifest.libc, [NAPI_LIBC[target.abi]])
    assert.ok(binding.includes(`require('./${addon}')`), `binding.js loads ./${addon}`)
    assert.ok(binding.includes(`require('${manifest.name}')`), `binding.js loads ${manifest.name}`)
  }
  // The binary travels in the platform package only; a local build still loads first.
  assert.ok(!ROOT_PACKAGE.files.some((pattern) => pattern.includes('.node')))
})

test('the packed tarballs install offline, without Rust, and lock against a real Redis', (t) => {
  assert.ok(hostTarget, 'no built addon for a configured napi target on this machine (npm run build)')
  t.diagnostic(`npm install: ${installTranscript.trim().split('\n').slice(-3).join(' | ')}`)
  const platformPackage = `${PACKAGE_NAME}-${hostTarget.platformArchABI}`
  const modules = path.join(app, 'node_modules')
  assert.deepEqual(fs.readdirSync(modules).filter((name) => !name.startsWith('.')).sort(), [PACKAGE_NAME, platformPackage].sort())

  const installed = path.join(modules, PACKAGE_NAME)
  assert.deepEqual(fs.readdirSync(installed).filter((file) => file.endsWith('.node')), [], 'the root package carries no binary')
  const manifest = readJson(path.join(installed, 'package.json'))
  assert.equal(manifest.optionalDependencies[platformPackage], ROOT_PACKAGE.version)
  assert.equal(Object.keys(manifest.optionalDependencies).length, TARGETS.length)
  for (const hook of ['preinstall', 'install', 'postinstall']) assert.equal(manifest.scripts?.[hook], undefined)
  const cargo = spawnSync('cargo', ['--version'], { env: userEnv() })
  if (cargo.error?.code === 'ENOENT') t.diagnostic('npm install ran with no cargo on the PATH')

  fs.writeFileSync(
    path.join(app, 'check.cjs'),
    `'use strict'
const ferrolock = require('ferrolock')
const medusa = require('ferrolock/medusa')
const url = process.env.REDIS_URL
;(async () => {
  const locks = await ferrolock.LockingModuleService.connect({ redisUrl: url, namespace: 'pkg-cjs:' })
  await locks.acquire('cart_1', { ownerId: 'a', expire: 30 })
  const conflict = await locks.acquire('cart_1', { ownerId: 'b' }).catch((error) => error.code)
  const released = await locks.release('cart_1', { ownerId: 'a' })
  const executed = await locks.execute(['cart_1', 'stock_9'], async (signal) => (signal.aborted ? 0 : 42))
  await locks.close()

  const provider = new medusa.FerrolockLockingProvider({}, { redisUrl: url, namespace: 'pkg-medusa:' })
  await provider.acquire('cart_2', { ownerId: 'm', expire: 30 })
  const providerReleased = await provider.release('cart_2', { ownerId: 'm' })
  await provider.shutdown()

  const imported = await import('ferrolock')
  const esmLocks = await imported.LockingModuleService.connect({ redisUrl: url, namespace: 'pkg-import:' })
  await esmLocks.acquire('cart_3')
  const importReleased = await esmLocks.release('cart_3')
  await esmLocks.close()

  console.log(JSON.stringify({
    addons: Object.keys(require.cache).filter((file) => file.endsWith('.node')),
    conflict, released, executed, providerReleased, importReleased,
    sameProvider: ferrolock.default === medusa.default,
    providerModule: medusa.default.module,
    importDefaultIsModuleExports: imported.default === ferrolock,
  }))
})().catch((error) => { console.error(error); process.exit(1) })
`,
  )
  fs.writeFileSync(
    path.join(app, 'check.mjs'),
    `import { LockingModuleService, ERROR_CODES } from 'ferrolock'
import medusa from 'ferrolock/medusa'
const locks = await LockingModuleService.connect({ redisUrl: process.env.REDIS_URL, namespace: 'pkg-esm:' })
const value = await locks.execute('cart_4', () => 'done')
await locks.close()
console.log(JSON.stringify({ value, code: ERROR_CODES.LOCK_CONFLICT, module: medusa.default.module }))
`,
  )
  const env = { ...userEnv(), REDIS_URL: redis.url }
  const cjs = JSON.parse(run(process.execPath, ['check.cjs'], { cwd: app, env }).stdout)
  assert.deepEqual(cjs.addons, [
    path.join(fs.realpathSync(modules), platformPackage, `${BINARY_NAME}.${hostTarget.platformArchABI}.node`),
  ])
  assert.equal(cjs.conflict, 'LOCK_CONFLICT')
  assert.equal(cjs.released, true)
  assert.equal(cjs.executed, 42)
  assert.equal(cjs.providerReleased, true)
  assert.equal(cjs.importReleased, true)
  assert.equal(cjs.sameProvider, true)
  assert.equal(cjs.providerModule, 'locking')
  assert.equal(cjs.importDefaultIsModuleExports, true)

  const esm = JSON.parse(run(process.execPath, ['check.mjs'], { cwd: app, env }).stdout)
  assert.deepEqual(esm, { value: 'done', code: 'LOCK_CONFLICT', module: 'locking' })
})

test('a strict TypeScript consumer compiles against the installed package', () => {
  assert.ok(hostTarget, 'no built addon for a configured napi target on this machine (npm run build)')
  // consumer-check/ as a user's project holds it; TypeScript and the Medusa and
  // Node types come from this repo (installing Medusa offline is not the point).
  const consumer = path.join(app, 'consumer-check')
  fs.cpSync(path.join(ROOT, 'consumer-check'), consumer, { recursive: true })
  for (const scope of ['@types', '@medusajs']) {
    fs.symlinkSync(fs.realpathSync(path.join(ROOT, 'node_modules', scope)), path.join(app, 'node_modules', scope), 'junction')
  }
  for (const project of ['tsconfig.json', 'tsconfig.medusa.json']) {
    const { stdout } = run(process.execPath, [TSC, '-p', path.join(consumer, project), '--listFiles'], { cwd: app })
    const ours = stdout.split('\n').filter((file) => file.includes(`/node_modules/${PACKAGE_NAME}/`))
    assert.ok(
      ours.some((file) => file.endsWith(`/node_modules/${PACKAGE_NAME}/index.d.ts`)) &&
        ours.some((file) => file.endsWith(`/node_modules/${PACKAGE_NAME}/medusa.d.ts`)),
      `${project} type-checks the installed .d.ts files:\n${ours.join('\n')}`,
    )
  }
})
