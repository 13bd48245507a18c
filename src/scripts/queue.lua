-- Waiter queues, prepended to the scripts that use them (see scripts.rs).
-- Each lock key has a queue: a sorted set of waiter ids by arrival time (us),
-- and a hash of waiter id -> entry. An entry is '<deadline ms>' or, for a
-- waiter that accepts a direct grant, '<deadline ms> <lease ms> <owner>'.
-- The waiter pushes its deadline forward on every attempt; an entry past it
-- belongs to a waiter that gave up or died and is dropped, so it cannot
-- block the queue.

-- The server clock, read at most once per script and only by a script that
-- needs it: every redis.call costs about a microsecond of Redis's one thread.
local clock_us
local function now_us()
  if not clock_us then
    local clock = redis.call('TIME')
    clock_us = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
  end
  return clock_us
end

local function now_ms()
  return math.floor(now_us() / 1000)
end

-- The first live waiter of a queue and its entry, or nil.
local function live_head(queue, entries)
  while true do
    local head = redis.call('ZRANGE', queue, 0, 0)[1]
    if not head then
      return nil
    end
    local entry = redis.call('HGET', entries, head)
    if entry and tonumber(string.match(entry, '^%d+')) >= now_ms() then
      return head, entry
    end
    redis.call('ZREM', queue, head)
    redis.call('HDEL', entries, head)
  end
end

-- The fencing token of a grant: above every earlier token of this counter,
-- and at least the server's clock in microseconds, so a Redis that restarts
-- empty (or a promoted replica that missed the last grants) still hands out
-- larger tokens, as long as its clock does not step back. Stored with
-- %.0f: Lua's tostring would write 1.7e+15. One GETSET when the clock has
-- moved on since the last grant (the usual case), a SET more when it has not.
local function next_fence(counter)
  local token = now_us()
  local last = tonumber(redis.call('GETSET', counter, string.format('%.0f', token)) or '0')
  if last >= token then
    token = last + 1
    redis.call('SET', counter, string.format('%.0f', token))
  end
  return token
end

-- Passes a lock that is free, or that its holder gives up, to its first
-- live waiter. A waiter that accepts direct grants gets the lock set to its
-- owner right here and is told so with its fencing token ('<id> + <token>'),
-- saving it a round trip; any other waiter is told to try now ('<id>').
-- Returns true when the lock was set to the waiter: a holder's value is
-- then overwritten, otherwise the holder still has to delete it.
local function hand_over(lock, queue, entries, channel, fence)
  local head, entry = live_head(queue, entries)
  if not head then
    return false
  end
  local lease_ms, owner = string.match(entry, '^%d+ (%d+) (.+)$')
  if owner then
    redis.call('SET', lock, owner, 'PX', lease_ms)
    redis.call('ZREM', queue, head)
    redis.call('HDEL', entries, head)
    redis.call('PUBLISH', channel, head .. ' + ' .. string.format('%.0f', next_fence(fence)))
    return true
  end
  redis.call('PUBLISH', channel, head)
  return false
end

-- Lua's unpack passes a few thousand values at most (a call may have 10,000
-- keys), so commands over many keys go in chunks of this many.
local CHUNK = 1000

-- The replies of `command` over list[first..last], sent in chunks, after
-- `key` if given (HDEL's hash).
local function in_chunks(command, key, list, first, last)
  local replies = {}
  for from = first, last, CHUNK do
    local to = math.min(from + CHUNK - 1, last)
    if key then
      replies[#replies + 1] = redis.call(command, key, unpack(list, from, to))
    else
      replies[#replies + 1] = redis.call(command, unpack(list, from, to))
    end
  end
  return replies
end

-- The values of KEYS[first..last] (false where a key is missing): one MGET
-- rather than a GET per key.
local function values_of(first, last)
  local replies = in_chunks('MGET', nil, KEYS, first, last)
  local values = replies[1]
  for r = 2, #replies do
    for _, value in ipairs(replies[r]) do
      values[#values + 1] = value
    end
  end
  return values
end

-- Whether any of the queues list[first..last] exists: one EXISTS for many
-- keys, so calls without waiters skip the per-key queue reads.
local function any_queue(list, first, last)
  for _, count in ipairs(in_chunks('EXISTS', nil, list, first, last)) do
    if count > 0 then
      return true
    end
  end
  return false
end
