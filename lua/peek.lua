--[[ peek: look at the next jobs to be delivered, in due order, without claiming them.
Waiting jobs are those in `due` and those whose lease has expired (due again
since their lock expired); jobs held by a live lock and dead jobs are not shown.
KEYS[1] due      (zset)  job id -> due time ms
KEYS[2] lease    (zset)  claimed job id -> lock expiry ms
KEYS[3] payload  (hash)
KEYS[4] meta     (hash)  job id -> the claims it used up (lapsed or nacked), when any
ARGV[1] now      (ms)    TEST ONLY override of the server clock; "" = use TIME
ARGV[2] limit    (count) 1..1000
Returns: flat array of id, payload, attempts (integer), due_ms (integer string)
  for each job, at most `limit` jobs, earliest first; equal due times by id, in
  byte order (as a sorted set orders them, so merges across shards agree).
Cost: O(log N + limit); 4 redis.call.
]]
local rcall = redis.call
local due_key, lease_key, payload_key, meta_key = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local limit = tonumber(ARGV[2])

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

local d = rcall('ZRANGE', due_key, 0, limit - 1, 'WITHSCORES')
local l = rcall('ZRANGEBYSCORE', lease_key, '-inf', lapsed, 'WITHSCORES', 'LIMIT', 0, limit)
-- byte order, as a sorted set compares members: Lua's < on strings follows the server's locale
local function before(a, b)
  for k = 1, math.min(#a, #b) do
    local x, y = string.byte(a, k), string.byte(b, k)
    if x ~= y then return x < y end
  end
  return #a < #b
end
-- lease scores carry a fraction of a millisecond (see dequeue.lua): both lists go by whole ms
local function whole(list)
  for k = 2, #list, 2 do list[k] = math.floor(tonumber(list[k])) end
end
whole(d)
whole(l)
-- the expired leases in (ms, id) order, as a sorted set of whole-ms scores would list them
local pairs_l = {}
for k = 1, #l, 2 do pairs_l[#pairs_l + 1] = {l[k], l[k + 1]} end
table.sort(pairs_l, function(x, y)
  if x[2] ~= y[2] then return x[2] < y[2] end
  return before(x[1], y[1])
end)
l = {}
for k = 1, #pairs_l do
  l[2 * k - 1] = pairs_l[k][1]
  l[2 * k] = pairs_l[k][2]
end
-- merge the two lists, each sorted by (score, id), into one sorted the same way
local ids, scores, held = {}, {}, {}
local i, j = 1, 1
while #ids < limit and (i <= #d or j <= #l) do
  local take_d = j > #l
  if not take_d and i <= #d then
    local ds, ls = d[i + 1], l[j + 1]
    take_d = ds < ls or (ds == ls and before(d[i], l[j]))
  end
  if take_d then
    ids[#ids + 1] = d[i]; scores[#scores + 1] = d[i + 1]; held[#held + 1] = 0; i = i + 2
  else
    ids[#ids + 1] = l[j]; scores[#scores + 1] = l[j + 1]; held[#held + 1] = 1; j = j + 2
  end
end
local reply = {}
if #ids > 0 then
  local payloads = rcall('HMGET', payload_key, unpack(ids))
  local metas = rcall('HMGET', meta_key, unpack(ids))
  for k = 1, #ids do
    if payloads[k] then
      reply[#reply + 1] = ids[k]
      reply[#reply + 1] = payloads[k]
      -- a lapsed lease's claim is not counted in meta yet
      reply[#reply + 1] = (metas[k] and tonumber(string.match(metas[k], '^%d+')) or 0) + held[k]
      reply[#reply + 1] = string.format('%d', scores[k])
    end
  end
end
return reply
