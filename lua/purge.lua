--[[ purge: delete up to `chunk` jobs (any state) with all their data; call until it returns 0.
Bounded so that purging a huge queue never blocks the server for long.
KEYS[1] due      (zset)
KEYS[2] lease    (zset)
KEYS[3] dead     (zset)
KEYS[4] payload  (hash)
KEYS[5] attempts (hash)
KEYS[6] token    (hash)
KEYS[7] errors   (hash)
ARGV[1] chunk    (count) 1..1000, jobs to delete in this call at most
Returns: integer, jobs deleted by this call; 0 means the queue is empty and its keys are gone.
Cost: O(chunk * log N); at most 18 redis.call.
]]
local rcall = redis.call
local chunk = tonumber(ARGV[1])
local removed = 0
for k = 1, 3 do
  local left = chunk - removed
  if left <= 0 then break end
  local ids = rcall('ZRANGE', KEYS[k], 0, left - 1)
  if #ids > 0 then
    rcall('ZREM', KEYS[k], unpack(ids))
    for h = 5, 7 do rcall('HDEL', KEYS[h], unpack(ids)) end
    rcall('HDEL', KEYS[4], unpack(ids))
    removed = removed + #ids
  end
end
if removed == 0 then
  -- every scheduled job is gone; what is left (normally nothing) is unscheduled data
  rcall('UNLINK', KEYS[4], KEYS[5], KEYS[6], KEYS[7])
end
return removed
