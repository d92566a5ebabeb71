--[[ extend: push a held lock's expiry to now + lock_ttl, if the caller still holds it.
The token stays the claim's: the job's new lease score (the expiry plus a fraction of a
millisecond no registry entry has) is registered as "<call token>/<job id>" (see dequeue.lua).
KEYS[1] lease    (zset)  claimed job id -> lock expiry ms
KEYS[2] claims   (zset)  the claims registry (see dequeue.lua)
KEYS[3] wake     (list)  wake-up tokens for consumers blocked in a long-poll (at most 1)
KEYS[4] waiters  (zset)  long-poll waiter id -> the time it will be back at the latest, ms
KEYS[5] meta     (hash)  job id -> the claims it used up (read: a token's attempts must match)
ARGV[1] now      (ms)    TEST ONLY override of the server clock; "" = use TIME
ARGV[2] id
ARGV[3] token    (string) "<attempts>:<token>" as dequeue gave it
ARGV[4] lock_ttl (ms)    new lease length, from the server's now, 1..43200000 (else an error)
Returns: the new expiry (ms, integer string) when the lock was held, else 0 (nothing changed;
  always for dequeue.lua's reserved SENTINEL, whatever the token).
Cost: O(log L + log C), C = claims registered; about 10 redis.call to lengthen a lock (the usual
  case); one that shortens it costs 3 more, and wakes one blocked consumer if every long-poll
  waiter will be back after the new expiry (the job is claimable again then: see dequeue.lua's
  wake-ups).
]]
local rcall = redis.call
local SENTINEL = '~delayq~sentinel~keeps-lease-and-meta-in-fast-encodings~never-a-job-id~'
local lease_key, claims_key, wake_key, waiters_key, meta_key = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local id, tok, ttl = ARGV[2], ARGV[3], tonumber(ARGV[4])
-- as dequeue.lua: a lease register() can place (an infinite or NaN expiry never moves on)
if not ttl or ttl ~= ttl or ttl < 1 or ttl > 43200000 then
  error('lock_ttl must be 1..43200000 ms, got ' .. tostring(ARGV[4]))
end

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
-- last), or for this job of that call once extended, and its attempts are the job's (a
-- token of one claim call names one claim of each job); never for the SENTINEL
local function holds(id, tok)
  if id == SENTINEL then return false end
  local exp = rcall('ZSCORE', lease_key, id)
  if not exp or math.floor(tonumber(exp)) <= now then return false end
  -- the token's attempts are the job's: the claims it used up (meta), and this one
  local used = rcall('HGET', meta_key, id)
  if tonumber(string.match(tok, '^%d+')) ~= (used and tonumber(string.match(used, '^%d+')) or 0) + 1 then
    return false
  end
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

-- shared fragment: wake
-- one wake-up token for a consumer blocked in a long-poll (the list holds one at most)
local function wake()
  rcall('LPUSH', wake_key, '1')
  rcall('LTRIM', wake_key, 0, 0)
end
-- end of shared fragment

-- shared fragment: wake_before
-- first_back: when the first long-poll waiter will be back (ms; nil: none), not counting one
-- whose time has passed (it is on its way back, or dead). wake_before: a wake-up token unless
-- a waiter is back by `at` (ms), when something becomes claimable
local function first_back()
  local w = rcall('ZRANGEBYSCORE', waiters_key, '(' .. now_s, '+inf', 'WITHSCORES', 'LIMIT', 0, 1)
  if #w > 0 then return tonumber(w[2]) end
  return nil
end
local function wake_before(at)
  local back = first_back()
  if back ~= nil and back > at then wake() end
end
-- end of shared fragment

if not holds(id, tok) then return 0 end
local before = math.floor(tonumber(rcall('ZSCORE', lease_key, id)))
local call = string.sub(tok, -16)
rcall('ZADD', lease_key, 'XX', register(now + ttl, call, call .. '/' .. id), id)
-- a lock made shorter leaves the job claimable earlier than any waiter may expect
if now + ttl < before then wake_before(now + ttl) end
return string.format('%d', now + ttl)
