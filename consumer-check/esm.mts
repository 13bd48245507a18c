// An ES module consumer: named imports come from the CommonJS entry through
// Node's named-export detection, and the default import is `module.exports`
// (Node does not honour `__esModule`), so the provider is `ferrolock.default`.
import ferrolock, { LockingModuleService } from "ferrolock"
import medusa from "ferrolock/medusa"

const locks: LockingModuleService = await LockingModuleService.connect({ redisUrl: "redis://localhost:6379" })
const value: number = await locks.execute("k", async () => 1)
await locks.close()

const viaDefault: typeof LockingModuleService = ferrolock.LockingModuleService
const moduleName: "locking" = ferrolock.default.module
const sameModuleName: "locking" = medusa.default.module
export { value, viaDefault, moduleName, sameModuleName }
