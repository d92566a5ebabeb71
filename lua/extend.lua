--[[ extend: push a held lock's expiry to now + lock_ttl, if the caller still holds it.
KEYS[1] lease    (zset)  claimed job id -> lock expiry ms
KEYS[2] meta     (hash)  job id -> "<attempts>:<token>" of its latest claim
KEYS[3] wake     (list)  wake-up tokens for consumers blocked in a long-poll (at most 1)
KEYS[4] waiters  (zset)  long-poll waiter id -> the time it will be back at the latest, ms
ARGV[1] now      (ms)    TEST ONLY override of the server clock; "" = use TIME
ARGV[2] id
ARGV[3] token    (string) "<attempts>:<token>" as dequeue gave it
ARGV[4] lock_ttl (ms)    new lease length, from the server's now
Returns: the new expiry (ms, integer string) when the lock was held, else 0 (nothing changed;
  always for dequeue.lua's reserved SENTINEL, whatever the token).
Cost: O(log L); 4 redis.call to lengthen a lock (the usual case); one that shortens it costs 4
  more, and wakes one blocked consumer if every long-poll waiter will be back after the new
  expiry (the job is claimable again then: see dequeue.lua's wake-ups).
]]
local rcall = redis.call
local SENTINEL = '~delayq~sentinel~keeps-lease-and-meta-in-fast-encodings~never-a-job-id~'
local lease_key, meta_key, wake_key, waiters_key = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
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
local expiry = string.format('%d', now + ttl)
-- GT: the usual extend, one call; a lock made shorter is claimable sooner than the waiters expect
if rcall('ZADD', lease_key, 'XX', 'GT', 'CH', expiry, id) == 0 then
  rcall('ZADD', lease_key, 'XX', expiry, id)
  wake_before(now + ttl)
end
return expiry
