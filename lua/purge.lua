--[[ purge: delete up to `chunk` jobs (any state) with all their data; call until it returns 0.
Bounded so that purging a huge queue never blocks the server for long.
KEYS[1] due      (zset)  job id -> due time ms
KEYS[2] lease    (zset)  claimed job id -> lock expiry ms
KEYS[3] dead     (zset)  dead-lettered job id -> time it died ms
KEYS[4] payload  (hash)  job id -> payload
KEYS[5] meta     (hash)  job id -> the claims it used up (lapsed or nacked), when any
KEYS[6] errors   (hash)  job id -> last error text
KEYS[7] wake     (list)  long-poll wake-up tokens
KEYS[8] claims   (zset)  the claims registry (see dequeue.lua)
ARGV[1] now      (ms)    not read (purge needs no clock): every script takes now in ARGV[1]
ARGV[2] chunk    (count) 1..1000, jobs to delete in this call at most
Returns: integer, jobs deleted by this call; 0 means the queue is empty and its keys are gone.
Cost: O(chunk * log N); at most 16 redis.call.
]]
local rcall = redis.call
local due_key, lease_key, dead_key, payload_key = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local meta_key, errors_key, wake_key, claims_key = KEYS[5], KEYS[6], KEYS[7], KEYS[8]
local chunk = tonumber(ARGV[2])
local removed = 0
for _, key in ipairs({due_key, lease_key, dead_key}) do
  local left = chunk - removed
  if left <= 0 then break end
  -- '(+inf' leaves out dequeue.lua's SENTINEL (in `lease` at +inf); UNLINK takes it at the end
  local ids = rcall('ZRANGEBYSCORE', key, '-inf', '(+inf', 'LIMIT', 0, left)
  if #ids > 0 then
    rcall('ZREM', key, unpack(ids))
    rcall('HDEL', meta_key, unpack(ids))
    rcall('HDEL', errors_key, unpack(ids))
    rcall('HDEL', payload_key, unpack(ids))
    removed = removed + #ids
  end
end
if removed == 0 then
  -- every scheduled job is gone; what is left (normally nothing) is unscheduled data
  rcall('UNLINK', lease_key, payload_key, meta_key, errors_key, wake_key, claims_key)
end
return removed
