--[[ extend: push a held lock's expiry to now + lock_ttl, if the caller still holds it.
KEYS[1] lease    (zset)  claimed job id -> lock expiry ms
KEYS[2] meta     (hash)  job id -> "<attempts>:<token>" of its latest claim
ARGV[1] now      (ms)    TEST ONLY override of the server clock; "" = use TIME
ARGV[2] id
ARGV[3] token    (string) "<attempts>:<token>" as dequeue gave it
ARGV[4] lock_ttl (ms)    new lease length, from the server's now
Returns: the new expiry (ms, integer string) when the lock was held, else 0 (nothing changed;
  always for dequeue.lua's reserved SENTINEL, whatever the token).
Cost: O(log L); 4 redis.call.
]]
local rcall = redis.call
local SENTINEL = '~delayq~sentinel~keeps-lease-and-meta-in-fast-encodings~never-a-job-id~'
local lease_key, meta_key = KEYS[1], KEYS[2]
local id, tok, ttl = ARGV[2], ARGV[3], tonumber(ARGV[4])

-- shared fragment: clock
local now = tonumber(ARGV[1])
if now == nil then
  local t = rcall('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local now_s = string.format('%d', now)
-- end of shared fragment

-- shared fragment: holds
-- the token check: true while `tok` is the job's latest claim and its lease has not expired;
-- never for the SENTINEL, whatever the token
local function holds(id, tok)
  if id == SENTINEL then return false end
  local exp = rcall('ZSCORE', lease_key, id)
  if not exp or tonumber(exp) <= now then return false end
  return rcall('HGET', meta_key, id) == tok
end
-- end of shared fragment

if not holds(id, tok) then return 0 end
local expiry = string.format('%d', now + ttl)
rcall('ZADD', lease_key, 'XX', expiry, id)
return expiry
