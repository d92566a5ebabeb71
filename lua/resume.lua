--[[ resume: let workers claim again after pause.lua; wakes one long-polling consumer.
KEYS[1] paused   (hash)  deleted
KEYS[2] due      (zset)  job id -> due time ms
KEYS[3] lease    (zset)  claimed job id -> lock expiry ms
KEYS[4] wake     (list)  wake-up tokens for consumers blocked in a long-poll (at most 1)
ARGV[1] now      (ms)    TEST ONLY override of the server clock; "" = use TIME
Returns: integer, 1 if the queue was paused, 0 if it was not.
Cost: O(log N); at most 6 redis.call. With a job ready, one token goes to `wake`, so a
  consumer blocked in dequeue(wait=...) claims at once; the others find out by themselves
  within a second (a paused queue's long-polls look again every second, see dequeue.lua).
]]
local rcall = redis.call
local paused_key, due_key, lease_key, wake_key = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
if rcall('DEL', paused_key) == 0 then return 0 end

-- shared fragment: clock
local now = tonumber(ARGV[1])
if now == nil then
  local t = rcall('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local now_s = string.format('%d', now)
-- lease scores carry a fraction of a millisecond (see dequeue.lua): a lease has expired when
-- its whole milliseconds are <= now, that is when its score is below `lapsed`
local lapsed = '(' .. string.format('%d', now + 1)
-- end of shared fragment

-- shared fragment: wake
-- one wake-up token for a consumer blocked in a long-poll (the list holds one at most)
local function wake()
  rcall('LPUSH', wake_key, '1')
  rcall('LTRIM', wake_key, 0, 0)
end
-- end of shared fragment

if #rcall('ZRANGEBYSCORE', due_key, '-inf', now_s, 'LIMIT', 0, 1) > 0
    or #rcall('ZRANGEBYSCORE', lease_key, '-inf', lapsed, 'LIMIT', 0, 1) > 0 then
  wake()
end
return 1
