--[[ get: look up one job by id: its state, the time that goes with it, attempts, last error, payload.
A job whose lock expired is "ready" (due again since the lock expired), as stats counts it.
KEYS[1] due      (zset)  job id -> due time ms
KEYS[2] lease    (zset)  claimed job id -> lock expiry ms
KEYS[3] payload  (hash)  job id -> payload
KEYS[4] meta     (hash)  job id -> the claims it used up (lapsed or nacked), when any
KEYS[5] dead     (zset)  dead-lettered job id -> time it died ms
KEYS[6] errors   (hash)  job id -> last error text
ARGV[1] now      (ms)    TEST ONLY override of the server clock; "" = use TIME
ARGV[2] id
ARGV[3] preview  (bytes) a payload longer than this is cut to this many bytes; "" = whole
Returns: {} when the queue has no such job; else an array of state ("ready", "delayed",
  "in_flight" or "dead"), at_ms (integer string: the due time for ready and delayed, the
  lock expiry for in_flight, the death time for dead), attempts (integer), payload (cut
  to `preview` bytes), error ("" when none), now_ms (integer string), payload length
  (integer).
Cost: O(log N) plus a copy of the payload inside the server (a hash field cannot be read
  in part); only `preview` bytes of it are sent. At most 7 redis.call.
]]
local rcall = redis.call
local SENTINEL = '~delayq~sentinel~keeps-lease-and-meta-in-fast-encodings~never-a-job-id~'
local due_key, lease_key, payload_key, meta_key = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local dead_key, errors_key = KEYS[5], KEYS[6]
local id, preview = ARGV[2], ARGV[3]
if id == SENTINEL then return {} end

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

local payload = rcall('HGET', payload_key, id)
if not payload then return {} end
local state, at
local held = 0  -- a job in `lease` is in its claim (or its lapsed claim), which meta does not count yet
local score = rcall('ZSCORE', dead_key, id)
if score then
  state, at = 'dead', score
else
  score = rcall('ZSCORE', lease_key, id)
  if score then
    if math.floor(tonumber(score)) > now then state = 'in_flight' else state = 'ready' end
    at, held = score, 1
  else
    score = rcall('ZSCORE', due_key, id)
    -- a payload with no score anywhere is unscheduled (see enqueue.lua's write order): not a job
    if not score then return {} end
    if tonumber(score) > now then state = 'delayed' else state = 'ready' end
    at = score
  end
end
local meta = rcall('HGET', meta_key, id)
local attempts = (meta and tonumber(string.match(meta, '^%d+')) or 0) + held
local size = #payload
if preview ~= '' and size > tonumber(preview) then payload = string.sub(payload, 1, tonumber(preview)) end
return {state, string.format('%d', math.floor(tonumber(at))), attempts, payload, rcall('HGET', errors_key, id) or '',
  now_s, size}
