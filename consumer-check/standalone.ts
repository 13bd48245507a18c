// The standalone API as the README shows it, type-checked under `strict`.
import { ERROR_CODES, LockingModuleService } from "ferrolock"
import type { FencingTokens, LockError, LockErrorCode, LockInfo, LockingOptions, LockStats } from "ferrolock"

type Equal<A, B> = (<T>() => T extends A ? 1 : 2) extends <T>() => T extends B ? 1 : 2 ? true : false
function assertType<T extends true>(): void {}

async function work(signal: AbortSignal): Promise<number> {
  return signal.aborted ? 0 : 42
}

export async function standalone(): Promise<void> {
  const options: LockingOptions = {
    redisUrl: "redis://localhost:6379",
    namespace: "medusa_lock:",
    waitLockingTimeout: 5,
    redisOptions: { connectTimeout: 5000, commandTimeout: 5000, tls: { rejectUnauthorized: true } },
  }
  const locks = await LockingModuleService.connect(options)

  // `execute` returns what the job returns: T is inferred, not `any`.
  const total = await locks.execute(["order_1", "stock_9"], async (signal) => work(signal), { timeout: 5, expire: 30 })
  assertType<Equal<typeof total, number>>()
  const label = await locks.execute("cart_1", () => "synchronous job")
  assertType<Equal<typeof label, string>>()
  const explicit = await locks.execute<{ id: string }>("cart_2", async () => ({ id: "x" }))
  assertType<Equal<typeof explicit, { id: string }>>()
  // @ts-expect-error the job's result is not a string
  const wrong: string = await locks.execute("cart_3", async () => 1)
  void wrong

  await locks.acquire("cart_123", { ownerId: "worker-7", expire: 30 })
  await locks.acquire(["a", "b"], { ownerId: "worker-7", awaitQueue: true, timeout: 2 })
  const released: boolean = await locks.release("cart_123", { ownerId: "worker-7" })
  assertType<Equal<typeof released, boolean>>()
  await locks.releaseAll({ ownerId: "worker-7" })
  // @ts-expect-error keys are strings
  await locks.acquire(7)

  // Fencing tokens, listing, stats, metrics.
  const tokens = await locks.acquire("cart_9", { ownerId: "worker-7" })
  assertType<Equal<typeof tokens, FencingTokens>>()
  const token: number | undefined = tokens["cart_9"]
  void token
  await locks.execute("cart_9", async (signal, grant) => {
    const owner: string = grant.ownerId
    const fence: number | undefined = grant.fencingTokens["cart_9"]
    void owner, fence, signal
  })
  const held: LockInfo[] = await locks.listLocks({ ownerId: "worker-7", pattern: "cart_*", limit: 10 })
  const holder: string | null = held[0]?.ownerId ?? null
  void holder
  const stats: LockStats = locks.stats()
  const p99: number = stats.waits.p99Ms
  void p99
  const prometheus: string = locks.metrics()
  void prometheus
  // @ts-expect-error limit is a number
  await locks.listLocks({ limit: "10" })
  await LockingModuleService.connect({ redisUrl: "redis://localhost:6379" }, { logger: console, logLevel: "debug" })

  const ignored: string[] = locks.ignoredOptions
  void ignored
  await locks.close()

  try {
    await new LockingModuleService({ clusterNodes: ["redis://10.0.0.1:7000"] }).acquire("k")
  } catch (error) {
    const lockError = error as LockError
    const code: LockErrorCode = lockError.code
    if (code === ERROR_CODES.LOCK_CONFLICT && lockError.type === "conflict") return
  }
}
