--[[ release: give a claimed job back unfinished, due now, as if this claim had not happened.
For a job its holder did not run to the end for its own reasons (a worker shutting
down): unlike nack, the attempt this claim counted is not used up, so the job never goes
to the dead letters by it and its next claim has the same `attempts` as this one.
The error text kept by an earlier nack, if any, stays.
KEYS[1] due      (zset)  job id -> due time ms
KEYS[2] lease    (zset)  claimed job id -> lock expiry ms
KEYS[3] claims   (zset)  the claims registry (see dequeue.lua)
KEYS[4] wake     (list)  wake-up tokens for consumers blocked in a long-poll (at most 1)
KEYS[5] waiters  (zset)  long-poll waiter id -> the time it will be back at the latest, ms
KEYS[6] meta     (hash)  job id -> the claims it used up (read: a token's attempts must match)
ARGV[1] now      (ms)    TEST ONLY override of the server clock; "" = use TIME
ARGV[2] id
ARGV[3] token    (string) "<attempts>:<token>" as dequeue gave it
Returns: integer: 0 = lock not held (nothing changed), 1 = due again now.
Cost: O(log N + log C), C = claims registered; at most 15 redis.call. Wakes one blocked consumer when the job becomes the earliest
  due and is due before every long-poll waiter will be back (see dequeue.lua).
]]
local rcall = redis.call
local SENTINEL = '~delayq~sentinel~keeps-lease-and-meta-in-fast-encodings~never-a-job-id~'
local due_key, lease_key, claims_key, wake_key, waiters_key, meta_key = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local id, tok = ARGV[2], ARGV[3]

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

-- shared fragment: drop_idle
-- lease keeps dequeue.lua's SENTINEL while it exists; with only it left, it goes, and the
-- claims registry with it (no claim is left to check); with nothing waiting either, the queue
-- is idle and its wake list goes too. meta holds no SENTINEL: it vanishes with its last field.
local function drop_idle()
  if rcall('ZCARD', lease_key) <= 1 then
    rcall('DEL', lease_key, claims_key)
    if rcall('ZCARD', due_key) == 0 then rcall('DEL', wake_key) end
  end
end
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

if not holds(id, tok) then return 0 end
-- meta counts the claims used up, and this one is not: it is left as it is, so the next claim
-- has the same attempts as this one
rcall('ZREM', claims_key, string.sub(tok, -16) .. '/' .. id)
local head = rcall('ZRANGE', due_key, 0, 0, 'WITHSCORES')
rcall('ZADD', due_key, now_s, id)
if #head == 0 or tonumber(head[2]) > now then wake_before(now) end
rcall('ZREM', lease_key, id)
drop_idle()
return 1
