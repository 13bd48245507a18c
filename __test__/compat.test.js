'use strict'
// Wire compatibility with @medusajs/locking-redis 2.21.2, both directions, on
// one real redis-server: Medusa's RedisLockingProvider (built the way its
// loader builds it: an ioredis client and a key prefix) next to ferrolock.
// Same keys, same values (`*` or the owner id), same TTLs, same messages; a
// lock taken by either excludes the other, and either can release the
// other's lock for the same owner — what a rolling migration relies on.
// (One documented exception: ferrolock's releaseAll for a named owner reads
// an index Medusa's provider does not write.)

const { test, before, after } = require('node:test')
const assert = require('node:assert/strict')
const Redis = require('ioredis')
// The package's only export is its ModuleProvider object; the class is its service.
const [RedisLockingProvider] = require('@medusajs/locking-redis').default.services
const { LockingModuleService } = require('..')
const { startRedis } = require('./helpers/redis')

let redis
let medusaClient
const opened = []
let namespaceSeq = 0

before(async () => {
  redis = await startRedis()
  medusaClient = new Redis(redis.url, { lazyConnect: true })
  await medusaClient.connect()
})

after(async () => {
  for (const service of opened) await service.close()
  medusaClient?.disconnect()
  await redis?.stop()
})

/** Both implementations on a fresh namespace (ferrolock's `namespace`, Medusa's `prefix`). */
async function pair() {
  namespaceSeq += 1
  const ns = `compat${namespaceSeq}:`
  const medusa = new RedisLockingProvider({ redisClient: medusaClient, prefix: ns }, { waitLockingTimeout: 1 })
  const ferrolock = await LockingModuleService.connect({ redisUrl: redis.url, namespace: ns, waitLockingTimeout: 1 })
  opened.push(ferrolock)
  const value = (key) => redis.cli('get', `${ns}${key}`)
  const pttl = async (key) => Number(await redis.cli('pttl', `${ns}${key}`))
  const keys = async () => {
    const out = await redis.cli('--scan', '--pattern', `${ns}*`)
    return out ? out.split('\n').sort() : []
  }
  return { ns, medusa, ferrolock, value, pttl, keys }
}

function conflictOn(key) {
  return (error) => {
    assert.equal(error.message, `Failed to acquire lock for key "${key}"`)
    assert.equal(error.type, 'conflict')
    return true
  }
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

const LABEL = { medusa: "Medusa's provider", ferrolock: 'ferrolock' }

for (const [holderName, otherName] of [
  ['medusa', 'ferrolock'],
  ['ferrolock', 'medusa'],
]) {
  const holderLabel = LABEL[holderName]
  const otherLabel = LABEL[otherName]

  test(`a lock taken by ${holderLabel} excludes ${otherLabel}, with the same data in Redis`, async () => {
    const impl = await pair()
    const holder = impl[holderName]
    const other = impl[otherName]

    // Without owner: value `*`, no TTL; nobody (owner or not) can take it.
    await holder.acquire('k')
    assert.equal(await impl.value('k'), '*')
    assert.equal(await impl.pttl('k'), -1)
    await assert.rejects(other.acquire('k'), conflictOn('k'))
    await assert.rejects(other.acquire('k', { ownerId: 'bob', expire: 5 }), conflictOn('k'))
    assert.equal(await impl.pttl('k'), -1, 'a refused acquire leaves the TTL alone')

    // With owner and expire: value = owner, TTL = expire seconds.
    await holder.acquire('owned', { ownerId: 'alice', expire: 30 })
    assert.equal(await impl.value('owned'), 'alice')
    const ttl = await impl.pttl('owned')
    assert.ok(ttl > 28_000 && ttl <= 30_000, `PTTL ${ttl}`)
    await assert.rejects(other.acquire('owned', { ownerId: 'bob' }), conflictOn('owned'))
    await assert.rejects(other.acquire('owned'), conflictOn('owned'))
    // The same owner re-enters through the other implementation and refreshes the TTL.
    await other.acquire('owned', { ownerId: 'alice', expire: 60 })
    assert.equal(await impl.value('owned'), 'alice')
    assert.ok((await impl.pttl('owned')) > 58_000)

    // Release by the other implementation: only for the same owner.
    assert.equal(await other.release('owned', { ownerId: 'bob' }), false)
    assert.equal(await other.release('k', { ownerId: 'alice' }), false)
    assert.deepEqual(await impl.keys(), [`${impl.ns}k`, `${impl.ns}owned`])
    assert.equal(await other.release('owned', { ownerId: 'alice' }), true)
    assert.equal(await other.release('k'), true)
    assert.deepEqual(await impl.keys(), [])
  })

  test(`releaseAll by ${otherLabel} removes the locks ${holderLabel} took for that owner only`, async () => {
    const impl = await pair()
    await impl[holderName].acquire(['a', 'b'], { ownerId: 'alice', expire: 30 })
    await impl[holderName].acquire('c', { ownerId: 'bob' })
    await impl[holderName].acquire('d')
    await impl[otherName].releaseAll({ ownerId: 'alice' })
    if (otherName === 'ferrolock') {
      // ferrolock finds a named owner's locks through its owner index (no scan
      // of the namespace), which Medusa's provider does not write: the locks
      // Medusa took for "alice" stay until Medusa releases them or they expire.
      assert.deepEqual(await impl.keys(), [`${impl.ns}a`, `${impl.ns}b`, `${impl.ns}c`, `${impl.ns}d`])
      await impl.medusa.releaseAll({ ownerId: 'alice' })
    }
    assert.deepEqual(await impl.keys(), [`${impl.ns}c`, `${impl.ns}d`])
    // Anonymous locks are found by scanning, whoever took them.
    await impl[otherName].releaseAll()
    assert.deepEqual(await impl.keys(), [`${impl.ns}c`])
    await impl[holderName].releaseAll({ ownerId: 'bob' })
    assert.deepEqual(await impl.keys(), [])
  })

  test(`execute by ${holderLabel} holds its keys against ${otherLabel}, with a 60 s lease`, async () => {
    const impl = await pair()
    let seen
    let otherError
    const result = await impl[holderName].execute(['x', 'y'], async () => {
      seen = { x: await impl.value('x'), y: await impl.value('y'), ttl: await impl.pttl('x') }
      // The other implementation waits its 1 s waitLockingTimeout, runs nothing.
      let ran = false
      await impl[otherName]
        .execute('y', async () => {
          ran = true
        })
        .catch((error) => (otherError = error))
      assert.equal(ran, false)
      await assert.rejects(impl[otherName].acquire('x', { ownerId: 'someone' }), conflictOn('x'))
      return 'done'
    })
    assert.equal(result, 'done')
    assert.ok(seen.x && seen.x !== '*' && seen.x === seen.y, `one fresh owner for all keys: ${JSON.stringify(seen)}`)
    assert.ok(seen.ttl > 55_000 && seen.ttl <= 60_000, `lease PTTL ${seen.ttl}`)
    assert.equal(otherError?.message, 'Timed-out acquiring lock.')
    assert.equal(otherError?.type, 'conflict')
    assert.deepEqual(await impl.keys(), [], 'both released everything')
  })

  test(`execute by ${otherLabel} waits for a lock held through ${holderLabel} and gets it once released`, async () => {
    const impl = await pair()
    await impl[holderName].acquire('queue', { ownerId: 'holder' })
    let releasedAt
    setTimeout(async () => {
      releasedAt = Date.now()
      await impl[holderName].release('queue', { ownerId: 'holder' })
    }, 300)
    const value = await impl[otherName].execute(
      'queue',
      async () => {
        assert.ok(releasedAt, 'the job ran only after the holder released')
        return impl.value('queue')
      },
      // Short: Medusa 2.21.2 never clears its timeout timer, which keeps this file's process alive.
      { timeout: 2 },
    )
    assert.ok(value && value !== 'holder')
    await sleep(10)
    assert.deepEqual(await impl.keys(), [])
  })
}

test('several keys, one held: same message from both; ferrolock keeps none of the free ones (BETTER)', async () => {
  const impl = await pair()
  await impl.medusa.acquire('b', { ownerId: 'other' })
  await assert.rejects(impl.ferrolock.acquire(['a', 'b', 'c'], { ownerId: 'me' }), conflictOn('b'))
  assert.deepEqual(await impl.keys(), [`${impl.ns}b`])
  await assert.rejects(impl.medusa.acquire(['a', 'b', 'c'], { ownerId: 'me' }), conflictOn('b'))
  // Medusa 2.21.2 leaves the keys it managed to take before failing.
  assert.deepEqual(await impl.keys(), [`${impl.ns}a`, `${impl.ns}b`, `${impl.ns}c`])
})
