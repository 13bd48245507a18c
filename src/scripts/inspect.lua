-- Describes lock keys for listing, changing nothing.
-- KEYS: n lock keys, then their n queues, then their n waiter-entry hashes.
-- Returns, per key, {holder, pttl, live waiters}; a key no longer held
-- comes back as {'', -2, 0}.
local n = math.floor(#KEYS / 3)
local described = {}
for i = 1, n do
  local holder = redis.call('GET', KEYS[i]) or ''
  local pttl, waiters = -2, 0
  if holder ~= '' then
    pttl = redis.call('PTTL', KEYS[i])
    for _, waiter in ipairs(redis.call('ZRANGE', KEYS[n + i], 0, -1)) do
      local entry = redis.call('HGET', KEYS[2 * n + i], waiter)
      if entry and tonumber(string.match(entry, '^%d+')) >= now_ms() then
        waiters = waiters + 1
      end
    end
  end
  described[i] = {holder, pttl, waiters}
end
return described
