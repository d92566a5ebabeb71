--[[ release: give a claimed job back unfinished, due now, as if this claim had not happened.
For a job its holder did not run to the end for its own reasons (a worker shutting
down): unlike nack, the attempt this claim counted is undone, so the job never goes
to the dead letters by it and its next claim has the same `attempts` as this one.
The error text kept by an earlier nack, if any, stays.
KEYS[1] due      (zset)  job id -> due time ms
KEYS[2] lease    (zset)  claimed job id -> lock expiry ms
KEYS[3] meta     (hash)  job id -> "<attempts>:<token>" of its latest claim
KEYS[4] wake     (list)  wake-up tokens for consumers blocked in a long-poll (at most 1)
KEYS[5] waiters  (zset)  long-poll waiter id -> the time it will be back at the latest, ms
ARGV[1] id
ARGV[2] token    (string) "<attempts>:<token>" as dequeue gave it
ARGV[3] now      (ms)    TEST ONLY override of the server clock; "" = use TIME
Returns: integer: 0 = lock not held (nothing changed), 1 = due again now.
Cost: O(log N); at most 14 redis.call. Wakes one blocked consumer when the job becomes the earliest
  due and is due before every long-poll waiter will be back (see dequeue.lua).
]]
local rcall = redis.call
local SENTINEL = '~delayq~sentinel~keeps-lease-and-meta-in-fast-encodings~never-a-job-id~'
local due_key, lease_key, meta_key, wake_key, waiters_key = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local id, tok, now_arg = ARGV[1], ARGV[2], ARGV[3]

-- the sentinel is no job: no token can hold it
if id == SENTINEL then return 0 end

local now
if now_arg ~= '' then
  now = tonumber(now_arg)
else
  local t = rcall('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local exp = rcall('ZSCORE', lease_key, id)
if rcall('HGET', meta_key, id) ~= tok or not exp or tonumber(exp) <= now then
  return 0
end
-- attempts are counted at claim time: this claim's count goes back to the one before it.
-- A job never claimed has no meta; otherwise the token part is left empty, which no
-- claim's token string ("<attempts>:<hex>") can equal.
local a = tonumber(string.match(tok, '^%d+'))
if a > 1 then
  rcall('HSET', meta_key, id, string.format('%d:', a - 1))
else
  rcall('HDEL', meta_key, id)
end
local head = rcall('ZRANGE', due_key, 0, 0, 'WITHSCORES')
rcall('ZADD', due_key, string.format('%d', now), id)
if #head == 0 or tonumber(head[2]) > now then
  local w = rcall('ZRANGEBYSCORE', waiters_key, '(' .. string.format('%d', now), '+inf', 'WITHSCORES', 'LIMIT', 0, 1)
  if #w > 0 then
    rcall('LPUSH', wake_key, '1')
    rcall('LTRIM', wake_key, 0, 0)
  end
end
rcall('ZREM', lease_key, id)
-- lease and meta keep dequeue.lua's SENTINEL while they exist; with only it left, they go
if rcall('ZCARD', lease_key) == 1 then rcall('DEL', lease_key) end
if rcall('HLEN', meta_key) == 1 then rcall('DEL', meta_key) end
return 1
