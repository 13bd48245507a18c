-- Takes every lock key for one owner, or none of them.
-- KEYS: n lock keys, then their n queues, then their n waiter-entry hashes,
-- then the fencing counter, then, for a named owner, the index of its keys.
-- ARGV[1] owner id ('*' = anonymous), ARGV[2] lease in ms (0 = no expiry),
-- ARGV[3] waiter id ('' when the caller does not wait), ARGV[4] ms the
-- waiter's queue entries live without a new attempt, ARGV[5] '1' when the
-- waiter accepts a direct grant (single key, owner unique to the call),
-- ARGV[6] length of the namespace (index members are keys without it).
-- A key held by the same named owner is re-entered and its lease reset; an
-- anonymous ('*') lock is never re-entered (Medusa's rule). A free key with
-- a live waiter queued ahead of the caller is not free for the caller: that
-- keeps waiting fair and stops the releasing caller from winning again.
-- Returns {0, token, fresh...} when taken (token: the grant's fencing token,
-- shared by its keys; fresh: 1 per key newly set, 0 per key re-entered, so a
-- multi-slot caller rolls back only what it took),
-- else {i, pttl}: the first blocking key's index
-- and its remaining TTL in ms (-1: no expiry, -2: blocked by the queue), so
-- a waiter knows how long it may sleep. A blocked waiter is queued on every
-- key of its call at once, so all queues agree on the order of any two
-- waiters and multi-key waits cannot deadlock.
local n = math.floor(#KEYS / 3)
local fence = KEYS[3 * n + 1]
local index = KEYS[3 * n + 2]
local owner = ARGV[1]
local lease_ms = tonumber(ARGV[2])
local waiter = ARGV[3]
local entry_ms = tonumber(ARGV[4])

local blocked, blocked_ttl
local held = values_of(1, n)
-- With one key its queue read is the check; with several, one EXISTS first
-- (when a key is free at all).
local queued
for i = 1, n do
  local holder = held[i]
  if holder then
    if holder ~= owner or owner == '*' then
      blocked, blocked_ttl = i, redis.call('PTTL', KEYS[i])
      break
    end
  else
    if queued == nil then
      queued = n == 1 or any_queue(KEYS, n + 1, 2 * n)
    end
    local head = queued and live_head(KEYS[n + i], KEYS[2 * n + i])
    if head and head ~= waiter then
      blocked, blocked_ttl = i, -2
      break
    end
  end
end

if blocked then
  if waiter ~= '' then
    local entry = tostring(now_ms() + entry_ms)
    if ARGV[5] == '1' and n == 1 and lease_ms > 0 then
      entry = entry .. ' ' .. lease_ms .. ' ' .. owner
    end
    for i = 1, n do
      local queue, entries = KEYS[n + i], KEYS[2 * n + i]
      redis.call('ZADD', queue, 'NX', now_us(), waiter)
      redis.call('HSET', entries, waiter, entry)
      -- Only ever lengthen: a short-lived waiter must not cut a longer one's entry.
      if redis.call('PTTL', queue) < entry_ms then
        redis.call('PEXPIRE', queue, entry_ms)
        redis.call('PEXPIRE', entries, entry_ms)
      end
    end
  end
  return {blocked, blocked_ttl}
end

local taken = {0, next_fence(fence)}
for i = 1, n do
  local fresh = not held[i]
  taken[i + 2] = fresh and 1 or 0
  -- MGET reads a key holding another type as missing; NX keeps such a key
  -- from being overwritten: the call fails and gives back what it took.
  local condition = fresh and 'NX' or 'XX'
  local set
  if lease_ms > 0 then
    set = redis.call('SET', KEYS[i], owner, condition, 'PX', lease_ms)
  else
    set = redis.call('SET', KEYS[i], owner, condition)
  end
  if not set then
    for j = 1, i - 1 do
      if taken[j + 2] == 1 then
        redis.call('DEL', KEYS[j])
      end
    end
    return redis.error_reply('WRONGTYPE lock key ' .. KEYS[i] .. ' holds a value that is not a lock')
  end
  if waiter ~= '' then
    redis.call('ZREM', KEYS[n + i], waiter)
    redis.call('HDEL', KEYS[2 * n + i], waiter)
  end
end

if index then
  -- The index is a hash of key -> '' with at most 127 fields, so Redis keeps
  -- it as a compact listpack (hash-max-listpack-entries is 128). An owner
  -- that holds more is marked with the field '' (never a key) and no longer
  -- indexed: releaseAll scans for it, which holding that many costs anyway.
  local index_ttl = redis.call('PTTL', index) -- -2: no index yet
  if index_ttl == -2 or redis.call('HEXISTS', index, '') == 0 then
    for i = 1, n do
      local member = string.sub(KEYS[i], tonumber(ARGV[6]) + 1)
      if redis.call('HSET', index, member, '') == 1 and redis.call('HLEN', index) > 127 then
        redis.call('HDEL', index, member)
        redis.call('HSET', index, '', '')
        break
      end
    end
  end
  -- The index lives as long as its longest lock, so it never outlasts them all.
  if lease_ms == 0 then
    if index_ttl >= 0 then
      redis.call('PERSIST', index)
    end
  elseif index_ttl == -2 or (index_ttl >= 0 and index_ttl < lease_ms) then
    redis.call('PEXPIRE', index, lease_ms)
  end
end
return taken
