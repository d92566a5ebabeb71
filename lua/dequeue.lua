--[[ dequeue: optionally ack a finished batch, then claim up to `batch` due jobs.
Each claimed job gets a lease: its id moves from `due` to `lease`, scored by the
lock's expiry, and a fresh token in `token`. The lease is the job's lock: it is
held while the token matches and the expiry is in the future. A job whose lease
expired is moved back to `due` (at its expiry time) by the next dequeue, so a
dead worker's jobs come back by themselves. A job claimed max_attempts times
and not acked goes to `dead` instead of being delivered again.
KEYS[1] due      (zset)  job id -> due time ms
KEYS[2] lease    (zset)  claimed job id -> lock expiry ms
KEYS[3] payload  (hash)  job id -> payload
KEYS[4] attempts (hash)  job id -> times claimed
KEYS[5] token    (hash)  claimed job id -> token of the current claim
KEYS[6] dead     (zset)  dead-lettered job id -> time it died ms
KEYS[7] errors   (hash)  job id -> last error text (removed on ack)
ARGV[1] batch        (count) 1..1000, jobs to claim at most
ARGV[2] lock_ttl     (ms)    lease length
ARGV[3] token_prefix (string) random per call; job i's token is prefix..i
ARGV[4] max_attempts (count) 0 = unlimited
ARGV[5] now          (ms)    TEST ONLY override of the server clock; "" = use TIME
ARGV[6] ack_count    (count) k, jobs to ack before claiming (0..1000)
ARGV[7..6+2k]        (id, token) pairs to ack, checked as ack.lua checks them
Returns: flat array: now_ms, next_ms, acked, dead_lettered, then for each claimed
  job id, payload, attempts, token. All numbers are integer strings except
  acked/dead_lettered (integers). next_ms is "" when the batch was filled,
  otherwise the earliest time (ms) a job becomes due or a lease expires, or ""
  when there is none.
Cost: O(log N + batch + k): 1 ZRANGEBYSCORE on lease, 1 on due, 2 HMGET,
  then one multi-member ZREM/ZADD/HSET per structure; no per-job redis.call.
]]
local rcall = redis.call
local due_key, lease_key, payload_key, attempts_key = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local token_key, dead_key, errors_key = KEYS[5], KEYS[6], KEYS[7]
local batch, ttl, prefix = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3]
local max_attempts, now_arg, ack_count = tonumber(ARGV[4]), ARGV[5], tonumber(ARGV[6])

local now
if now_arg ~= '' then
  now = tonumber(now_arg)
else
  local t = rcall('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local now_s = string.format('%d', now)

-- 1. ack the previous batch (same rule as ack.lua)
local acked = 0
if ack_count > 0 then
  local ids, toks = {}, {}
  for i = 1, ack_count do
    ids[i] = ARGV[5 + 2 * i]
    toks[i] = ARGV[6 + 2 * i]
  end
  local cur = rcall('HMGET', token_key, unpack(ids))
  local exp = rcall('ZMSCORE', lease_key, unpack(ids))
  local ok = {}
  for i = 1, ack_count do
    if cur[i] == toks[i] and exp[i] and tonumber(exp[i]) > now then
      ok[#ok + 1] = ids[i]
    end
  end
  acked = #ok
  if acked > 0 then
    rcall('ZREM', lease_key, unpack(ok))
    rcall('HDEL', token_key, unpack(ok))
    rcall('HDEL', attempts_key, unpack(ok))
    rcall('HDEL', errors_key, unpack(ok))
    rcall('HDEL', payload_key, unpack(ok))
  end
end

-- 2. expired leases are due again, at the time their lock expired
local expired = rcall('ZRANGEBYSCORE', lease_key, '-inf', now_s, 'WITHSCORES', 'LIMIT', 0, batch)
if #expired > 0 then
  local zargs, ids = {}, {}
  for i = 1, #expired, 2 do
    zargs[#zargs + 1] = expired[i + 1]
    zargs[#zargs + 1] = expired[i]
    ids[#ids + 1] = expired[i]
  end
  rcall('ZADD', due_key, unpack(zargs))
  rcall('ZREM', lease_key, unpack(ids))
  rcall('HDEL', token_key, unpack(ids))
end

-- 3. claim
local reply = {now_s, '', acked, 0}
local ids = rcall('ZRANGEBYSCORE', due_key, '-inf', now_s, 'LIMIT', 0, batch)
local n = #ids
local claimed = 0
if n > 0 then
  local payloads = rcall('HMGET', payload_key, unpack(ids))
  local counts = rcall('HMGET', attempts_key, unpack(ids))
  local expiry = string.format('%d', now + ttl)
  local lease_args, token_args, attempt_args, dead_args = {}, {}, {}, {}
  for i = 1, n do
    local id = ids[i]
    local a = tonumber(counts[i]) or 0
    if not payloads[i] then
      -- unreachable by the write order of every script; dropped rather than delivered empty
    elseif max_attempts > 0 and a >= max_attempts then
      dead_args[#dead_args + 1] = now_s
      dead_args[#dead_args + 1] = id
    else
      a = a + 1
      claimed = claimed + 1
      local tok = prefix .. claimed
      lease_args[#lease_args + 1] = expiry
      lease_args[#lease_args + 1] = id
      token_args[#token_args + 1] = id
      token_args[#token_args + 1] = tok
      attempt_args[#attempt_args + 1] = id
      attempt_args[#attempt_args + 1] = a
      reply[#reply + 1] = id
      reply[#reply + 1] = payloads[i]
      reply[#reply + 1] = a
      reply[#reply + 1] = tok
    end
  end
  -- lease and token are written before the job leaves `due`
  if claimed > 0 then
    rcall('ZADD', lease_key, unpack(lease_args))
    rcall('HSET', token_key, unpack(token_args))
    rcall('HSET', attempts_key, unpack(attempt_args))
  end
  if #dead_args > 0 then
    rcall('ZADD', dead_key, unpack(dead_args))
    reply[4] = #dead_args / 2
  end
  rcall('ZREM', due_key, unpack(ids))
end

-- 4. when the batch is not full, tell the caller when to look again
if claimed < batch then
  local next_ms
  local d = rcall('ZRANGE', due_key, 0, 0, 'WITHSCORES')
  if #d > 0 then next_ms = tonumber(d[2]) end
  local l = rcall('ZRANGE', lease_key, 0, 0, 'WITHSCORES')
  if #l > 0 and (next_ms == nil or tonumber(l[2]) < next_ms) then next_ms = tonumber(l[2]) end
  if next_ms ~= nil then reply[2] = string.format('%d', next_ms) end
end
return reply
