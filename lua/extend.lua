--[[ extend: push a held lock's expiry to now + lock_ttl, if the caller still holds it.
KEYS[1] lease    (zset)  claimed job id -> lock expiry ms
KEYS[2] meta     (hash)  job id -> "<attempts>:<token>" of its latest claim
ARGV[1] id
ARGV[2] token    (string) "<attempts>:<token>" as dequeue gave it
ARGV[3] lock_ttl (ms)    new lease length, from the server's now
ARGV[4] now      (ms)    TEST ONLY override of the server clock; "" = use TIME
Returns: the new expiry (ms, integer string) when the lock was held, else 0 (nothing changed;
  always for dequeue.lua's reserved SENTINEL, whatever the token).
Cost: O(log L); 4 redis.call.
]]
local rcall = redis.call
local SENTINEL = '~delayq~sentinel~keeps-lease-and-meta-in-fast-encodings~never-a-job-id~'
local lease_key, meta_key = KEYS[1], KEYS[2]
local id, tok, ttl, now_arg = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4]

local now
if now_arg ~= '' then
  now = tonumber(now_arg)
else
  local t = rcall('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local exp = rcall('ZSCORE', lease_key, id)
if id == SENTINEL or rcall('HGET', meta_key, id) ~= tok or not exp or tonumber(exp) <= now then
  return 0
end
local expiry = string.format('%d', now + ttl)
rcall('ZADD', lease_key, 'XX', expiry, id)
return expiry
