// The Medusa side: the provider satisfies Medusa's own `ILockingProvider`, the
// module export is what `ModuleProvider(Modules.LOCKING, ...)` would build,
// and `resolve: "ferrolock"` and `resolve: "ferrolock/medusa"` give the same thing.
import type { ILockingProvider, ModuleProvider, ModuleProviderExports } from "@medusajs/framework/types"
import ferrolock from "ferrolock"
import medusaProvider, { FerrolockLockingProvider, PROVIDER_IDENTIFIER, ferrolockLoader } from "ferrolock/medusa"

type Equal<A, B> = (<T>() => T extends A ? 1 : 2) extends <T>() => T extends B ? 1 : 2 ? true : false
function assertType<T extends true>(): void {}

// Instances are Medusa locking providers...
const provider: ILockingProvider = new FerrolockLockingProvider({}, { redisUrl: "redis://localhost:6379" })
// ...and so is whatever the class builds, which is what Medusa's loader instantiates.
const providerClass: new (container: Record<string, unknown>, options: Record<string, unknown>) => ILockingProvider =
  FerrolockLockingProvider
void providerClass

const identifier: "locking-redis" = FerrolockLockingProvider.identifier
assertType<Equal<typeof PROVIDER_IDENTIFIER, "locking-redis">>()
void identifier

// Both entry points' default export is the same ModuleProvider object, usable
// wherever Medusa takes a provider's module exports.
assertType<Equal<typeof ferrolock, typeof medusaProvider>>()
const exportsForMedusa: ModuleProviderExports<ILockingProvider> = medusaProvider
const configured: ModuleProvider = {
  resolve: "ferrolock",
  id: "redis-lock",
  is_default: true,
  options: { redisUrl: process.env.LOCKING_REDIS_URL },
}
void exportsForMedusa
void configured
void ferrolockLoader

export async function inAStep(): Promise<string> {
  const result = await provider.execute("cart_123", async () => "done", { timeout: 5 })
  assertType<Equal<typeof result, string>>()
  await provider.acquire("cart_123", { ownerId: "cart-flow", expire: 30 })
  await provider.release("cart_123", { ownerId: "cart-flow" })
  return result
}
