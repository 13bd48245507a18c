-- Waiter queues, prepended to the scripts that use them (see scripts.rs).
-- Each lock key has a queue: a sorted set of waiter ids by arrival time (us),
-- and a hash of waiter id -> deadline (ms) that the waiter pushes forward on
-- every attempt. An entry past its deadline belongs to a waiter that gave up
-- or died, and is dropped so it cannot block the queue.
local clock = redis.call('TIME')
local now_ms = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local now_us = tonumber(clock[1]) * 1000000 + tonumber(clock[2])

-- The first live waiter of a queue, or nil.
local function live_head(queue, deadlines)
  while true do
    local head = redis.call('ZRANGE', queue, 0, 0)[1]
    if not head then
      return nil
    end
    local deadline = redis.call('HGET', deadlines, head)
    if deadline and tonumber(deadline) >= now_ms then
      return head
    end
    redis.call('ZREM', queue, head)
    redis.call('HDEL', deadlines, head)
  end
end
