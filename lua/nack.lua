--[[ nack: give a claimed job back, due again after a delay, if the caller holds its lock.
With max_attempts > 0 and the job already claimed that many times, it goes to
the dead letters instead. An error text, when given, is kept for dead_letters().
KEYS[1] due      (zset)  job id -> due time ms
KEYS[2] lease    (zset)  claimed job id -> lock expiry ms
KEYS[3] meta     (hash)  job id -> "<attempts>:<token>" of its latest claim
KEYS[4] dead     (zset)  dead-lettered job id -> time it died ms
KEYS[5] errors   (hash)  job id -> last error text
KEYS[6] wake     (list)  wake-up tokens for consumers blocked in a long-poll (at most 1)
KEYS[7] waiters  (zset)  long-poll waiter id -> the time it will be back at the latest, ms
ARGV[1] id
ARGV[2] token        (string) "<attempts>:<token>" as dequeue gave it
ARGV[3] delay        (ms)    from the server's now
ARGV[4] max_attempts (count) 0 = unlimited
ARGV[5] error        (string) "" = keep the previous error text
ARGV[6] now          (ms)    TEST ONLY override of the server clock; "" = use TIME
Returns: integer: 0 = lock not held (nothing changed; always for dequeue.lua's reserved
  SENTINEL, whatever the token), 1 = due again, 2 = dead-lettered.
Cost: O(log N); at most 15 redis.call. Wakes one blocked consumer when the job becomes the earliest
  due and is due before every long-poll waiter will be back (see dequeue.lua).
]]
local rcall = redis.call
local SENTINEL = '~delayq~sentinel~keeps-lease-and-meta-in-fast-encodings~never-a-job-id~'
local due_key, lease_key, meta_key, dead_key, errors_key, wake_key = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local waiters_key = KEYS[7]
local id, tok, delay, max_attempts, err, now_arg = ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4]), ARGV[5], ARGV[6]

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
if err ~= '' then rcall('HSET', errors_key, id, err) end
local result
-- meta keeps "<attempts>:<token>": the attempts count survives; the token dies with the lease
local a = tonumber(string.match(tok, '^%d+'))
if max_attempts > 0 and a >= max_attempts then
  rcall('ZADD', dead_key, string.format('%d', now), id)
  result = 2
else
  local head = rcall('ZRANGE', due_key, 0, 0, 'WITHSCORES')
  rcall('ZADD', due_key, string.format('%d', now + delay), id)
  if #head == 0 or tonumber(head[2]) > now + delay then
    local w = rcall('ZRANGEBYSCORE', waiters_key, '(' .. string.format('%d', now), '+inf', 'WITHSCORES', 'LIMIT', 0, 1)
    if #w > 0 and tonumber(w[2]) > now + delay then
      rcall('LPUSH', wake_key, '1')
      rcall('LTRIM', wake_key, 0, 0)
    end
  end
  result = 1
end
rcall('ZREM', lease_key, id)
-- lease and meta keep dequeue.lua's SENTINEL while they exist; with only it left, they go
if rcall('ZCARD', lease_key) == 1 then
  rcall('DEL', lease_key)
  if rcall('ZCARD', due_key) == 0 then rcall('DEL', wake_key) end
end
if rcall('HLEN', meta_key) == 1 then rcall('DEL', meta_key) end
return result
