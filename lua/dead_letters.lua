--[[ dead_letters: list dead-lettered jobs, oldest death first.
KEYS[1] dead     (zset)  dead-lettered job id -> time it died ms
KEYS[2] payload  (hash)
KEYS[3] meta     (hash)  job id -> the claims it used up (a dead job: all its claims)
KEYS[4] errors   (hash)  job id -> last error text
ARGV[1] now      (ms)    not read (dead_letters needs no clock): every script takes now in ARGV[1]
ARGV[2] limit    (count) 1..1000
Returns: flat array of id, payload, attempts (integer), died_ms (integer string),
  error ("" when none was recorded) for each job.
Cost: O(log D + limit); 4 redis.call.
]]
local rcall = redis.call
local dead_key, payload_key, meta_key, errors_key = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local limit = tonumber(ARGV[2])
local d = rcall('ZRANGE', dead_key, 0, limit - 1, 'WITHSCORES')
local reply = {}
if #d > 0 then
  local ids = {}
  for i = 1, #d, 2 do ids[#ids + 1] = d[i] end
  local payloads = rcall('HMGET', payload_key, unpack(ids))
  local metas = rcall('HMGET', meta_key, unpack(ids))
  local errs = rcall('HMGET', errors_key, unpack(ids))
  for k = 1, #ids do
    reply[#reply + 1] = ids[k]
    reply[#reply + 1] = payloads[k] or ''
    reply[#reply + 1] = metas[k] and tonumber(string.match(metas[k], '^%d+')) or 0
    reply[#reply + 1] = string.format('%d', tonumber(d[2 * k]))
    reply[#reply + 1] = errs[k] or ''
  end
end
return reply
