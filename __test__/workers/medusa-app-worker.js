'use strict'
// Child process for medusa.test.js: boots Medusa's locking module with
// ferrolock as its provider (`resolve: "ferrolock"`), optionally takes a lock,
// shuts the app down the way Medusa does, prints one JSON line and then simply
// returns — the parent checks that the process exits by itself (no handle left
// open). Failed boots run here too: Medusa 2.21.2 then leaves a stray rejected
// promise that node:test would pin on whichever test is running.
// No IPC channel: it would keep this process alive.
//
// argv[2]: JSON { options, key?, clientName? }; cwd: a project dir where
// `ferrolock` and `@medusajs/*` resolve.
// stdout: { booted: true, locked?, lines } or { error, lines }, `lines` being
// everything logged through Medusa's logger.

const { MedusaApp, MedusaModule } = require('@medusajs/framework/modules-sdk')
const { Modules } = require('@medusajs/framework/utils')

const cfg = JSON.parse(process.argv[2])

// A failed module load also rejects MedusaModule.bootstrap_'s internal loading
// promise, which nobody awaits; the same error reaches our await below.
process.on('unhandledRejection', (error) => {
  if (!String(error?.message).startsWith('Errors while loading module providers')) throw error
})

// Stands in for `@medusajs/medusa/link-modules`, which is not installed here.
const linkModulesStub = { initialize: async () => ({}), getMigrationPlanner: () => undefined }
const lines = []
const record = (level) => (message) => lines.push({ level, message: String(message) })
const logger = { info: record('info'), warn: record('warn'), error: record('error'), log: record('info'), debug() {} }

async function main() {
  let app
  try {
    app = await MedusaApp({
      cwd: process.cwd(),
      modulesConfig: {
        [Modules.LINK]: linkModulesStub,
        [Modules.LOCKING]: {
          resolve: '@medusajs/locking',
          options: { providers: [{ resolve: 'ferrolock', id: 'redis-lock', is_default: true, options: cfg.options }] },
        },
      },
      injectedDependencies: { logger },
    })
  } catch (error) {
    console.log(JSON.stringify({ error: String(error?.message ?? error), lines }))
    return
  }
  if (cfg.key) await app.modules[Modules.LOCKING].acquire(cfg.key, { ownerId: 'worker', expire: 30 })
  console.log(JSON.stringify({ booted: true, locked: cfg.key, lines }))
  await app.onApplicationPrepareShutdown()
  await app.onApplicationShutdown()
  MedusaModule.clearInstances()
}

main().catch((error) => {
  console.error(error)
  process.exitCode = 1
})
