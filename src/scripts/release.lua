-- Deletes each lock key that ARGV[1] holds and hands it over to its first
-- live waiter (see hand_over), announced on channel ARGV[2].
-- KEYS: n lock keys, then their n queues, then their n waiter-entry hashes,
-- then the fencing counter, then, for a named owner, the index of its keys
-- (members are keys without the namespace, whose length is ARGV[3]).
-- Returns how many keys were released.
local n = math.floor(#KEYS / 3)
local fence = KEYS[3 * n + 1]
local index = KEYS[3 * n + 2]
local held = values_of(1, n)
local ours, locks, queues = {}, {}, {}
for i = 1, n do
  if held[i] == ARGV[1] then
    ours[#ours + 1] = i
    locks[#locks + 1] = KEYS[i]
    queues[#queues + 1] = KEYS[n + i]
  end
end
if #ours > 0 then
  local freed = locks
  -- With one key its queue read is the check; with several, one EXISTS first.
  if #ours == 1 or any_queue(queues, 1, #queues) then
    -- A key granted to its waiter is overwritten by the grant: no DEL first.
    freed = {}
    for _, i in ipairs(ours) do
      if not hand_over(KEYS[i], KEYS[n + i], KEYS[2 * n + i], ARGV[2], fence) then
        freed[#freed + 1] = KEYS[i]
      end
    end
  end
  if #freed > 0 then
    in_chunks('DEL', nil, freed, 1, #freed)
  end
end
if index then
  local members = {}
  for i = 1, n do
    members[i] = string.sub(KEYS[i], tonumber(ARGV[3]) + 1)
  end
  in_chunks('HDEL', index, members, 1, n)
end
return #ours
