-- Deletes each lock key that ARGV[1] holds and hands it over to its first
-- live waiter (see hand_over), announced on channel ARGV[2].
-- KEYS: n lock keys, then their n queues, then their n waiter-entry hashes,
-- then the fencing counter, then, for a named owner, the index of its keys
-- (members are keys without the namespace, whose length is ARGV[3]).
-- Returns how many keys were released.
local n = math.floor(#KEYS / 3)
local fence = KEYS[3 * n + 1]
local index = KEYS[3 * n + 2]
local released = 0
for i = 1, n do
  if redis.call('GET', KEYS[i]) == ARGV[1] then
    redis.call('DEL', KEYS[i])
    released = released + 1
    hand_over(KEYS[i], KEYS[n + i], KEYS[2 * n + i], ARGV[2], fence)
  end
  if index then
    redis.call('HDEL', index, string.sub(KEYS[i], tonumber(ARGV[3]) + 1))
  end
end
return released
