--[[ ack: delete finished jobs whose lock the caller still holds.
A job is acked only if its current token equals the caller's and its lease has
not expired; otherwise it is left exactly as it is (another worker may hold it).
KEYS[1] lease    (zset)  claimed job id -> lock expiry ms
KEYS[2] payload  (hash)  job id -> payload
KEYS[3] attempts (hash)  job id -> times claimed
KEYS[4] token    (hash)  claimed job id -> token of the current claim
KEYS[5] errors   (hash)  job id -> last error text
ARGV[1] now      (ms)    TEST ONLY override of the server clock; "" = use TIME
ARGV[2..]        (id, token) pairs, at most 1000, ids distinct
Returns: integer, how many jobs were acked.
Cost: O(batch * log L), L = jobs in flight; 7 redis.call per batch.
]]
local rcall = redis.call
local lease_key, payload_key, attempts_key, token_key, errors_key = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local now_arg = ARGV[1]

local now
if now_arg ~= '' then
  now = tonumber(now_arg)
else
  local t = rcall('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local n = (#ARGV - 1) / 2
local ids, toks = {}, {}
for i = 1, n do
  ids[i] = ARGV[2 * i]
  toks[i] = ARGV[2 * i + 1]
end
local cur = rcall('HMGET', token_key, unpack(ids))
local exp = rcall('ZMSCORE', lease_key, unpack(ids))
local ok = {}
for i = 1, n do
  if cur[i] == toks[i] and exp[i] and tonumber(exp[i]) > now then
    ok[#ok + 1] = ids[i]
  end
end
if #ok > 0 then
  -- the lease goes first: a job without a lease but with a payload is still findable by cancel/purge
  rcall('ZREM', lease_key, unpack(ok))
  rcall('HDEL', token_key, unpack(ok))
  rcall('HDEL', attempts_key, unpack(ok))
  rcall('HDEL', errors_key, unpack(ok))
  rcall('HDEL', payload_key, unpack(ok))
end
return #ok
