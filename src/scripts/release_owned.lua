-- releaseAll for a named owner: takes up to ARGV[4] keys out of its index
-- KEYS[1], deletes those it still holds (ARGV[1]; the index may list keys
-- since expired or taken over) and hands each over to its next waiter on
-- channel ARGV[2]. ARGV[3] is the namespace. Returns {released, left in the index}.
local released = 0
for _, key in ipairs(redis.call('SPOP', KEYS[1], tonumber(ARGV[4]))) do
  local lock = ARGV[3] .. key
  if redis.call('GET', lock) == ARGV[1] then
    redis.call('DEL', lock)
    released = released + 1
    hand_over(lock, queue_key(lock), entries_key(lock), ARGV[2])
  end
end
return {released, redis.call('SCARD', KEYS[1])}
