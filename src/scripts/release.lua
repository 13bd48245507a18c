-- Deletes each lock key that ARGV[1] holds and hands it over to its first
-- live waiter (see hand_over), announced on channel ARGV[2].
-- KEYS: n lock keys, then their n queues, then their n waiter-entry hashes.
-- Returns how many keys were released.
local n = #KEYS / 3
local released = 0
for i = 1, n do
  if redis.call('GET', KEYS[i]) == ARGV[1] then
    redis.call('DEL', KEYS[i])
    released = released + 1
    hand_over(KEYS[i], KEYS[n + i], KEYS[2 * n + i], ARGV[2])
  end
end
return released
