--[[ jobs: one page of a queue's jobs in one state, for a dashboard; nothing is changed.
Pages are addressed by rank, so any page costs O(log N + limit), however deep.
ready: jobs whose lock expired (by expiry), then due jobs (by due time); delayed: by
due time; in_flight: by lock expiry; dead: by time of death.
KEYS[1] due      (zset)  job id -> due time ms
KEYS[2] lease    (zset)  claimed job id -> lock expiry ms (and dequeue.lua's SENTINEL at +inf)
KEYS[3] payload  (hash)  job id -> payload
KEYS[4] meta     (hash)  job id -> the claims it used up (lapsed or nacked), when any
KEYS[5] dead     (zset)  dead-lettered job id -> time it died ms
KEYS[6] errors   (hash)  job id -> last error text
ARGV[1] now      (ms)    TEST ONLY override of the server clock; "" = use TIME
ARGV[2] state    "ready", "delayed", "in_flight" or "dead"
ARGV[3] offset   (count) jobs of that state to skip
ARGV[4] limit    (count) 0..1000 jobs at most; 0 = count only
ARGV[5] preview  (bytes) payloads longer than this are cut to this many bytes
Returns: flat array: now_ms (integer string), total (integer, jobs in that state), then
  for each job id, at_ms (integer string: due time, lock expiry or death time), attempts
  (integer), payload (cut to `preview` bytes), payload length (integer), error ("" if none).
  An unknown state is the error "ERR delayq: unknown state".
Cost: O(log N + limit); at most 8 redis.call.
]]
local rcall = redis.call
local due_key, lease_key, payload_key, meta_key = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local dead_key, errors_key = KEYS[5], KEYS[6]
local state, offset, limit, preview = ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])

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

-- the page as (key, first rank, last rank) slices of the sorted sets
local total
local slices = {}
local function slice(key, first, count)
  if count > 0 then slices[#slices + 1] = {key, first, first + count - 1} end
end
local function page(key, base, size)
  local skip = math.min(offset, size)
  slice(key, base + skip, math.min(limit, size - skip))
end
if state == 'ready' then
  local expired = rcall('ZCOUNT', lease_key, '-inf', lapsed)
  local due = rcall('ZCOUNT', due_key, '-inf', now_s)
  total = expired + due
  local skip = math.min(offset, expired)
  local from_lease = math.min(limit, expired - skip)
  slice(lease_key, skip, from_lease)
  local skip_due = math.max(0, offset - expired)
  slice(due_key, skip_due, math.min(limit - from_lease, due - skip_due))
elseif state == 'delayed' then
  local due = rcall('ZCOUNT', due_key, '-inf', now_s)
  total = rcall('ZCARD', due_key) - due
  page(due_key, due, total)
elseif state == 'in_flight' then
  local expired = rcall('ZCOUNT', lease_key, '-inf', lapsed)
  -- '(+inf' leaves out the SENTINEL, which sits last at +inf
  total = rcall('ZCOUNT', lease_key, string.sub(lapsed, 2), '(+inf')
  page(lease_key, expired, total)
elseif state == 'dead' then
  total = rcall('ZCARD', dead_key)
  page(dead_key, 0, total)
else
  return redis.error_reply('ERR delayq: unknown state')
end

-- a job in `lease` is in its claim (or its lapsed claim), which meta does not count yet
local ids, ats, held = {}, {}, {}
for s = 1, #slices do
  local got = rcall('ZRANGE', slices[s][1], slices[s][2], slices[s][3], 'WITHSCORES')
  for i = 1, #got, 2 do
    ids[#ids + 1] = got[i]
    ats[#ats + 1] = got[i + 1]
    held[#held + 1] = slices[s][1] == lease_key and 1 or 0
  end
end
local reply = {now_s, total}
if #ids > 0 then
  local payloads = rcall('HMGET', payload_key, unpack(ids))
  local metas = rcall('HMGET', meta_key, unpack(ids))
  local errs = rcall('HMGET', errors_key, unpack(ids))
  for k = 1, #ids do
    local p = payloads[k] or ''
    reply[#reply + 1] = ids[k]
    reply[#reply + 1] = string.format('%d', math.floor(tonumber(ats[k])))
    reply[#reply + 1] = (metas[k] and tonumber(string.match(metas[k], '^%d+')) or 0) + held[k]
    reply[#reply + 1] = string.sub(p, 1, preview)
    reply[#reply + 1] = #p
    reply[#reply + 1] = errs[k] or ''
  end
end
return reply
