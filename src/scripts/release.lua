-- Deletes each key in KEYS that ARGV[1] holds. Returns how many were deleted.
local released = 0
for _, key in ipairs(KEYS) do
  if redis.call('GET', key) == ARGV[1] then
    redis.call('DEL', key)
    released = released + 1
  end
end
return released
