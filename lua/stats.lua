--[[ stats: count the queue's jobs by state, the age of the oldest ready job, and the pause, by the server's clock.
KEYS[1] due      (zset)  job id -> due time ms
KEYS[2] lease    (zset)  claimed job id -> lock expiry ms
KEYS[3] dead     (zset)  dead-lettered job id -> time it died ms
KEYS[4] paused   (hash)  exists while the queue is paused (pause.lua)
ARGV[1] now      (ms)    TEST ONLY override of the server clock; "" = use TIME
Returns: array of 6 integers: ready (due, not held), delayed (not due yet),
  in_flight (held by a live lock), dead, oldest_ready_age (ms since the oldest
  ready job came due; 0 when none is ready), paused (1 or 0).
Cost: O(log N); 10 redis.call.
]]
local rcall = redis.call
local due_key, lease_key, dead_key, paused_key = KEYS[1], KEYS[2], KEYS[3], KEYS[4]

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
local after = '(' .. now_s
local ready = rcall('ZCOUNT', due_key, '-inf', now_s) + rcall('ZCOUNT', lease_key, '-inf', lapsed)
-- the oldest ready job heads `due` or (its lock expired) `lease`; a head above now is not ready
local oldest = now
local head = rcall('ZRANGE', due_key, 0, 0, 'WITHSCORES')
if #head > 0 then oldest = math.min(oldest, tonumber(head[2])) end
head = rcall('ZRANGE', lease_key, 0, 0, 'WITHSCORES')
if #head > 0 then oldest = math.min(oldest, tonumber(head[2])) end
-- '(+inf' leaves out dequeue.lua's SENTINEL, which sits in `lease` at +inf
return {ready, rcall('ZCOUNT', due_key, after, '+inf'), rcall('ZCOUNT', lease_key, string.sub(lapsed, 2), '(+inf'), rcall('ZCARD', dead_key),
  now - math.floor(oldest), rcall('EXISTS', paused_key)}
