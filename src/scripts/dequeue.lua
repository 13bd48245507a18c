-- Waiter ARGV[1] stops waiting (timed out or closed): its queue entries go;
-- a grant that reached it too late (lock held by ARGV[2], '' = never) is
-- undone; every free key is handed over to its next waiter on channel ARGV[3].
-- KEYS: n lock keys, then their n queues, then their n waiter-entry hashes,
-- then the fencing counter (and possibly an owner index, unused here).
local n = math.floor(#KEYS / 3)
local fence = KEYS[3 * n + 1]
for i = 1, n do
  local lock, queue, entries = KEYS[i], KEYS[n + i], KEYS[2 * n + i]
  redis.call('ZREM', queue, ARGV[1])
  redis.call('HDEL', entries, ARGV[1])
  local holder = redis.call('GET', lock)
  if holder and holder == ARGV[2] then
    redis.call('DEL', lock)
    holder = nil
  end
  if not holder then
    hand_over(lock, queue, entries, ARGV[3], fence)
  end
end
return 0
