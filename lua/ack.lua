--[[ ack: delete finished jobs whose lock the caller still holds.
A job is acked only if its meta still equals the caller's token string (so no
later claim replaced it) and its lease has not expired; otherwise it is left
exactly as it is (another worker may hold it). The reserved SENTINEL (see
dequeue.lua) is never acked, whatever token comes with it.
KEYS[1] lease    (zset)  claimed job id -> lock expiry ms
KEYS[2] payload  (hash)  job id -> payload
KEYS[3] meta     (hash)  job id -> "<attempts>:<token>" of its latest claim
KEYS[4] errors   (hash)  job id -> last error text
KEYS[5] due      (zset)  waiting job id -> due time ms (only counted, for the clean-up)
KEYS[6] wake     (list)  long-poll wake-up tokens (deleted with an idle queue)
ARGV[1] now      (ms)    TEST ONLY override of the server clock; "" = use TIME
ARGV[2..]        (id, token string) pairs, 1 to 1000, ids distinct
Returns: array of integers: the positions (1..n, in ARGV pair order) of the acks
  refused because the lock was lost, negated when the job has no meta left (gone:
  acked or cancelled since); empty when every one was applied.
Cost: O(batch * log L), L = jobs in flight; at most 13 redis.call per batch.
]]
local rcall = redis.call
local SENTINEL = '~delayq~sentinel~keeps-lease-and-meta-in-fast-encodings~never-a-job-id~'
local lease_key, payload_key, meta_key, errors_key, due_key, wake_key = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]

-- shared fragment: clock
local now = tonumber(ARGV[1])
if now == nil then
  local t = rcall('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local now_s = string.format('%d', now)
-- end of shared fragment

-- shared fragment: acks
-- the token check of a batch: `count` (id, token) pairs from ARGV[first]; a pair is applied
-- while its token is the job's latest claim and its lease has not expired (never the
-- SENTINEL's), the lease first and the payload last. Returns how many were applied, and the
-- positions (1..count) of the refused ones, negated when the job has no meta left (gone)
local function apply_acks(first, count)
  local ids, toks = {}, {}
  for i = 1, count do
    ids[i] = ARGV[first + 2 * i - 2]
    toks[i] = ARGV[first + 2 * i - 1]
  end
  local cur = rcall('HMGET', meta_key, unpack(ids))
  local exp = rcall('ZMSCORE', lease_key, unpack(ids))
  local ok, acked, refused = {}, 0, {}
  for i = 1, count do
    if cur[i] == toks[i] and exp[i] and tonumber(exp[i]) > now and ids[i] ~= SENTINEL then
      acked = acked + 1
      ok[acked] = ids[i]
    elseif cur[i] then
      refused[#refused + 1] = i  -- the rare path: a lock lost
    else
      refused[#refused + 1] = -i
    end
  end
  if acked > 0 then
    rcall('ZREM', lease_key, unpack(ok))
    rcall('HDEL', meta_key, unpack(ok))
    if rcall('EXISTS', errors_key) == 1 then rcall('HDEL', errors_key, unpack(ok)) end
    rcall('HDEL', payload_key, unpack(ok))
  end
  return acked, refused
end
-- end of shared fragment

-- shared fragment: drop_idle
-- lease and meta keep dequeue.lua's SENTINEL while they exist; with only it left, they go,
-- and with nothing waiting either, the queue is idle and its wake list goes too
local function drop_idle()
  if rcall('ZCARD', lease_key) <= 1 then
    rcall('DEL', lease_key)
    if rcall('ZCARD', due_key) == 0 then rcall('DEL', wake_key) end
  end
  if rcall('HLEN', meta_key) == 1 then rcall('DEL', meta_key) end
end
-- end of shared fragment

local acked, refused = apply_acks(2, (#ARGV - 1) / 2)
if acked > 0 then drop_idle() end
return refused
