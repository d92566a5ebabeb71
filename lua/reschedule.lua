--[[ reschedule: change the due time of a job that is waiting (not held by a live lock, not dead).
A job whose lease has expired counts as waiting: it is moved back to `due`.
KEYS[1] due      (zset)  job id -> due time ms
KEYS[2] lease    (zset)  claimed job id -> lock expiry ms
KEYS[3] wake     (list)  wake-up tokens for consumers blocked in a long-poll (at most 1)
KEYS[4] waiters  (zset)  long-poll waiter id -> the time it will be back at the latest, ms
KEYS[5] meta     (hash)  job id -> the claims it used up (lapsed or nacked): a lapsed lease counts
ARGV[1] now      (ms)    TEST ONLY override of the server clock; "" = use TIME
ARGV[2] id
ARGV[3] mode     "rel": ARGV[4] is a delay from the server's now; "abs": an absolute time
ARGV[4] when     (ms)    integer
Returns: integer, 1 if rescheduled, 0 if the job is not waiting (absent, in flight or dead,
  or dequeue.lua's reserved SENTINEL, which never moves).
Cost: O(log N); at most 11 redis.call. Wakes one blocked consumer when the job becomes the earliest
  due and is due before every long-poll waiter will be back (see dequeue.lua).
]]
local rcall = redis.call
local SENTINEL = '~delayq~sentinel~keeps-lease-and-meta-in-fast-encodings~never-a-job-id~'
local due_key, lease_key, wake_key, waiters_key, meta_key = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local id, mode, when = ARGV[2], ARGV[3], tonumber(ARGV[4])
if id == SENTINEL then return 0 end

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
local score = when
if mode ~= 'abs' then score = now + when end
local score_s = string.format('%d', score)

local function wake_if_earliest()
  local head = rcall('ZRANGE', due_key, 0, 0, 'WITHSCORES')
  if #head == 0 or head[1] == id and tonumber(head[2]) == score then
    wake_before(score)
  end
end

if rcall('ZSCORE', due_key, id) then
  rcall('ZADD', due_key, 'XX', score_s, id)
  wake_if_earliest()
  return 1
end
local exp = rcall('ZSCORE', lease_key, id)
if exp and math.floor(tonumber(exp)) <= now then
  rcall('HSET', meta_key, id, tonumber(rcall('HGET', meta_key, id) or '0') + 1)
  rcall('ZADD', due_key, score_s, id)
  rcall('ZREM', lease_key, id)
  wake_if_earliest()
  return 1
end
return 0
