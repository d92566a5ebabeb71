--[[ extend: push a held lock's expiry to now + lock_ttl, if the caller still holds it.
The token stays the claim's: the job's new lease score (the expiry plus a fraction of a
millisecond no registry entry has) is registered as "<call token>/<job id>" (see dequeue.lua).
KEYS[1] lease    (zset)  claimed job id -> lock expiry ms
KEYS[2] claims   (zset)  the claims registry (see dequeue.lua)
ARGV[1] now      (ms)    TEST ONLY override of the server clock; "" = use TIME
ARGV[2] id
ARGV[3] token    (string) "<attempts>:<token>" as dequeue gave it
ARGV[4] lock_ttl (ms)    new lease length, from the server's now
Returns: the new expiry (ms, integer string) when the lock was held, else 0 (nothing changed;
  always for dequeue.lua's reserved SENTINEL, whatever the token).
Cost: O(log L + log C), C = claims registered; about 8 redis.call.
]]
local rcall = redis.call
local SENTINEL = '~delayq~sentinel~keeps-lease-and-meta-in-fast-encodings~never-a-job-id~'
local lease_key, claims_key = KEYS[1], KEYS[2]
local id, tok, ttl = ARGV[2], ARGV[3], tonumber(ARGV[4])

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

-- shared fragment: holds
-- the token check: true while the lease has not expired and its score is the one the
-- claims registry holds for the token's call ("<attempts>:<16 hex digits>", the call's part
-- last), or for this job of that call once extended; never for the SENTINEL
local function holds(id, tok)
  if id == SENTINEL then return false end
  local exp = rcall('ZSCORE', lease_key, id)
  if not exp or math.floor(tonumber(exp)) <= now then return false end
  local call = string.sub(tok, -16)
  local reg = rcall('ZMSCORE', claims_key, call, call .. '/' .. id)
  for k = 1, 2 do
    if reg[k] and tonumber(reg[k]) == tonumber(exp) then return true end
  end
  return false
end
-- end of shared fragment


-- shared fragment: register
-- a lease score for expiry `at` (ms) that no entry of the claims registry has: `at` plus a
-- fraction of a millisecond from the random `call` token, moved on by 1/2048 ms while taken,
-- registered as `member`; the entries that expired go first. Returned as the exact string
local function register(at, call, member)
  rcall('ZREMRANGEBYSCORE', claims_key, '-inf', lapsed)
  local score = at + ((tonumber(string.sub(call, 1, 3), 16) or 0) % 2048) / 2048
  local s = string.format('%.17g', score)
  while #rcall('ZRANGEBYSCORE', claims_key, s, s, 'LIMIT', 0, 1) > 0 do
    score = score + 1 / 2048
    s = string.format('%.17g', score)
  end
  rcall('ZADD', claims_key, s, member)
  return s
end
-- end of shared fragment

if not holds(id, tok) then return 0 end
local call = string.sub(tok, -16)
local score = register(now + ttl, call, call .. '/' .. id)
rcall('ZADD', lease_key, 'XX', score, id)
return string.format('%d', now + ttl)
