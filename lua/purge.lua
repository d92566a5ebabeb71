--[[ purge: delete up to `chunk` jobs (any state) with all their data; call until it returns 0.
Bounded so that purging a huge queue never blocks the server for long.
KEYS[1] due      (zset)
KEYS[2] lease    (zset)
KEYS[3] dead     (zset)
KEYS[4] payload  (hash)
KEYS[5] meta     (hash)
KEYS[6] errors   (hash)
KEYS[7] wake     (list)
ARGV[1] chunk    (count) 1..1000, jobs to delete in this call at most
Returns: integer, jobs deleted by this call; 0 means the queue is empty and its keys are gone.
Cost: O(chunk * log N); at most 16 redis.call.
]]
local rcall = redis.call
local chunk = tonumber(ARGV[1])
local removed = 0
for k = 1, 3 do
  local left = chunk - removed
  if left <= 0 then break end
  -- '(+inf' leaves out dequeue.lua's SENTINEL (in `lease` at +inf); UNLINK takes it at the end
  local ids = rcall('ZRANGEBYSCORE', KEYS[k], '-inf', '(+inf', 'LIMIT', 0, left)
  if #ids > 0 then
    rcall('ZREM', KEYS[k], unpack(ids))
    rcall('HDEL', KEYS[5], unpack(ids))
    rcall('HDEL', KEYS[6], unpack(ids))
    rcall('HDEL', KEYS[4], unpack(ids))
    removed = removed + #ids
  end
end
if removed == 0 then
  -- every scheduled job is gone; what is left (normally nothing) is unscheduled data
  rcall('UNLINK', KEYS[2], KEYS[4], KEYS[5], KEYS[6], KEYS[7])
end
return removed
