--[[ pause: stop workers from claiming this queue's jobs; enqueues, acks and nacks go on.
dequeue.lua claims nothing while `paused` exists (see its pause section); resume.lua ends it.
KEYS[1] paused   (hash)  "since" -> time the pause began ms
ARGV[1] now      (ms)    TEST ONLY override of the server clock; "" = use TIME
Returns: integer, 1 if the queue was not paused before, 0 if it already was (its time is kept).
Cost: O(1); at most 3 redis.call.
]]
local rcall = redis.call
local paused_key = KEYS[1]

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
-- EXISTS and HSET rather than HSETNX: the README's least-privilege ACL names no more commands
if rcall('EXISTS', paused_key) == 1 then return 0 end
rcall('HSET', paused_key, 'since', now_s)
return 1
