-- Deletes each lock key that ARGV[1] holds and wakes the first live waiter
-- of each freed key with a message on channel ARGV[2].
-- KEYS: n lock keys, then their n queues, then their n deadline hashes.
-- Returns how many keys were released.
local n = #KEYS / 3
local released = 0
for i = 1, n do
  if redis.call('GET', KEYS[i]) == ARGV[1] then
    redis.call('DEL', KEYS[i])
    released = released + 1
    local head = live_head(KEYS[n + i], KEYS[2 * n + i])
    if head then
      redis.call('PUBLISH', ARGV[2], head)
    end
  end
end
return released
