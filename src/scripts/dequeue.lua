-- Waiter ARGV[1] stops waiting (timed out or closed): its queue entries go,
-- and the next live waiter of any free key is woken on channel ARGV[2].
-- KEYS: n lock keys, then their n queues, then their n deadline hashes.
local n = #KEYS / 3
for i = 1, n do
  local queue, deadlines = KEYS[n + i], KEYS[2 * n + i]
  redis.call('ZREM', queue, ARGV[1])
  redis.call('HDEL', deadlines, ARGV[1])
  if redis.call('EXISTS', KEYS[i]) == 0 then
    local head = live_head(queue, deadlines)
    if head then
      redis.call('PUBLISH', ARGV[2], head)
    end
  end
end
return 0
