-- Takes every key in KEYS for one owner, or none of them.
-- ARGV[1] owner id ('*' = anonymous), ARGV[2] lease in ms (0 = no expiry).
-- A key already held by the same named owner is re-entered and its lease reset;
-- an anonymous ('*') lock is never re-entered (Medusa's rule).
-- Returns {0, 0} when taken, else {i, pttl}: the first blocking key's index in
-- KEYS and its remaining TTL in ms (-1: no expiry), so a waiter knows how long to sleep.
local owner = ARGV[1]
local lease_ms = tonumber(ARGV[2])

for i, key in ipairs(KEYS) do
  local holder = redis.call('GET', key)
  if holder and (holder ~= owner or owner == '*') then
    return {i, redis.call('PTTL', key)}
  end
end

for _, key in ipairs(KEYS) do
  if lease_ms > 0 then
    redis.call('SET', key, owner, 'PX', lease_ms)
  else
    redis.call('SET', key, owner)
  end
end
return {0, 0}
