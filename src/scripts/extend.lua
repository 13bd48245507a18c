-- Resets the lease (ARGV[2] ms) of each key in KEYS still held by ARGV[1].
-- Returns 0 when every key was extended, else the index of the first key no
-- longer held: that lease is gone for good (deleted, expired or taken over).
for i, key in ipairs(KEYS) do
  if redis.call('GET', key) == ARGV[1] then
    redis.call('PEXPIRE', key, ARGV[2])
  else
    return i
  end
end
return 0
