--[[ dequeue: optionally ack a finished batch, then claim up to `batch` due jobs.
Each claimed job gets a lease: its id moves from `due` to `lease`, scored by the
lock's expiry, and its `meta` becomes "<attempts>:<token>". The lease is the
job's lock: it is held while `meta` equals the holder's token string and the
expiry is in the future. A job whose lease expired is moved back to `due` (at
its expiry time) by the next dequeue, so a dead worker's jobs come back by
themselves. A job claimed max_attempts times and not acked goes to `dead`
instead of being delivered again.
`lease` and `meta` always hold SENTINEL (a member/field longer than 64 bytes,
score +inf) while they exist: it keeps them in Redis's skiplist/hashtable
encodings, where a 100-job ZADD costs ~0.2 us a member instead of ~1.3 us in a
listpack; the clean-up that deletes them when only SENTINEL is left runs after
the claims, so a worker's loop never deletes and rebuilds them. ack/nack/cancel
delete them the same way.
KEYS[1] due      (zset)  job id -> due time ms
KEYS[2] lease    (zset)  claimed job id -> lock expiry ms
KEYS[3] payload  (hash)  job id -> payload
KEYS[4] meta     (hash)  claimed job id -> "<attempts>:<token>" of its latest claim
KEYS[5] dead     (zset)  dead-lettered job id -> time it died ms
KEYS[6] errors   (hash)  job id -> last error text (removed on ack)
KEYS[7] wake     (list)  wake-up tokens for consumers blocked in a long-poll (at most 1)
ARGV[1] batch        (count) 1..1000, jobs to claim at most
ARGV[2] lock_ttl     (ms)    lease length
ARGV[3] token        (string) random per call; job i's token string is "<attempts>:<token>"
ARGV[4] max_attempts (count) 0 = unlimited
ARGV[5] now          (ms)    TEST ONLY override of the server clock; "" = use TIME
ARGV[6] ack_count    (count) k, jobs to ack (0..1000), checked as ack.lua checks them
ARGV[7..6+2k]        (id, token string) pairs to ack
Returns: flat array: now_ms, next_ms, refused, dead_lettered, then for each claimed
  job id, payload, attempts, due_ms. now_ms/next_ms/due_ms are integer strings,
  dead_lettered and attempts integers; due_ms is when the job came due (for a
  redelivered job, when its previous lease expired). refused is a nested array of
  integers: the positions (1..k, in ARGV order) of the acks refused because the
  lock was lost, empty when all k were applied; a position is negated when the
  job has no meta left (gone: acked or cancelled since, as for a caller that
  re-sends an ack whose first reply it lost). next_ms is "" when the batch was filled,
  otherwise the earliest time a job becomes due or a lease expires ("" if none).
Cost: O(log N + batch + k): ZRANGEBYSCORE on lease and on due, 2 HMGET, then one
  multi-member ZADD/HSET/ZREM/HDEL per structure; no per-job redis.call.
]]
local rcall = redis.call
local SENTINEL = '~delayq~sentinel~keeps-lease-and-meta-in-fast-encodings~never-a-job-id~'
local due_key, lease_key, payload_key, meta_key = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local dead_key, errors_key, wake_key = KEYS[5], KEYS[6], KEYS[7]
local batch, ttl, token = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3]
local max_attempts, now_arg, ack_count = tonumber(ARGV[4]), ARGV[5], tonumber(ARGV[6])

local now
if now_arg ~= '' then
  now = tonumber(now_arg)
else
  local t = rcall('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local now_s = string.format('%d', now)

-- 1. the acks: checked and applied first; the keys they may leave idle are dropped only at
-- the end, after the claims have refilled them (see the header)
local acked, ok, refused = 0, {}, {}
if ack_count > 0 then
  local ids, toks = {}, {}
  for i = 1, ack_count do
    ids[i] = ARGV[5 + 2 * i]
    toks[i] = ARGV[6 + 2 * i]
  end
  local cur = rcall('HMGET', meta_key, unpack(ids))
  local exp = rcall('ZMSCORE', lease_key, unpack(ids))
  for i = 1, ack_count do
    if cur[i] == toks[i] and exp[i] and tonumber(exp[i]) > now then
      acked = acked + 1
      ok[acked] = ids[i]
    elseif cur[i] then
      refused[#refused + 1] = i  -- the rare path: a lock lost
    else
      refused[#refused + 1] = -i
    end
  end
  -- the lease goes first, the payload last
  if acked > 0 then
    rcall('ZREM', lease_key, unpack(ok))
    rcall('HDEL', meta_key, unpack(ok))
    if rcall('EXISTS', errors_key) == 1 then rcall('HDEL', errors_key, unpack(ok)) end
    rcall('HDEL', payload_key, unpack(ok))
  end
end

-- 2. expired leases are due again, at the time their lock expired (meta keeps the
-- attempts; its stale token no longer matters, as the lease is gone)
local expired = rcall('ZRANGEBYSCORE', lease_key, '-inf', now_s, 'WITHSCORES', 'LIMIT', 0, batch)
if #expired > 0 then
  local zargs, ids = {}, {}
  for i = 1, #expired, 2 do
    zargs[i] = expired[i + 1]
    zargs[i + 1] = expired[i]
    ids[(i + 1) / 2] = expired[i]
  end
  rcall('ZADD', due_key, unpack(zargs))
  rcall('ZREM', lease_key, unpack(ids))
end

-- 3. claim. Plain counters, not #t + 1 (a length is O(log n) in Lua 5.1), and one
-- random token per call: a (job id, token) pair is still unique per claim.
local reply = {now_s, '', refused, 0}
local r = 4
local due = rcall('ZRANGEBYSCORE', due_key, '-inf', now_s, 'WITHSCORES', 'LIMIT', 0, batch)
local ids = {}
local n = 0
for i = 1, #due, 2 do
  n = n + 1
  ids[n] = due[i]
end
local claimed = 0
if n > 0 then
  local payloads = rcall('HMGET', payload_key, unpack(ids))
  local metas = rcall('HMGET', meta_key, unpack(ids))
  local expiry = string.format('%d', now + ttl)
  local lease_args, meta_args, dead_args = {'+inf', SENTINEL}, {SENTINEL, ''}, {}
  local first_claim = '1:' .. token  -- the meta of most claims: built once, not once a job
  local l, d = 2, 0
  for i = 1, n do
    local id = ids[i]
    local a = 0
    if metas[i] then a = tonumber(string.match(metas[i], '^%d+')) end
    if not payloads[i] then
      -- unreachable by the write order of every script; dropped rather than delivered empty
    elseif max_attempts > 0 and a >= max_attempts then
      dead_args[d + 1] = now_s
      dead_args[d + 2] = id
      d = d + 2
    else
      a = a + 1
      claimed = claimed + 1
      lease_args[l + 1] = expiry
      lease_args[l + 2] = id
      meta_args[l + 1] = id
      if a == 1 then meta_args[l + 2] = first_claim else meta_args[l + 2] = a .. ':' .. token end
      l = l + 2
      reply[r + 1] = id
      reply[r + 2] = payloads[i]
      reply[r + 3] = a
      reply[r + 4] = due[2 * i]
      r = r + 4
    end
  end
  -- lease and meta are written before the job leaves `due`
  if claimed > 0 then
    rcall('ZADD', lease_key, unpack(lease_args))
    rcall('HSET', meta_key, unpack(meta_args))
  end
  if d > 0 then
    rcall('ZADD', dead_key, unpack(dead_args))
    reply[4] = d / 2
  end
  rcall('ZREM', due_key, unpack(ids))
end

-- 4. with the acks done and nothing claimed in their place, an idle queue drops its keys
if acked > 0 then
  if rcall('ZCARD', lease_key) == 1 then
    rcall('DEL', lease_key)
    if rcall('ZCARD', due_key) == 0 then rcall('DEL', wake_key) end
  end
  if rcall('HLEN', meta_key) == 1 then rcall('DEL', meta_key) end
end

-- 5. a full batch that leaves due jobs behind passes a wake-up on to the next
-- blocked consumer: waiters wake one at a time, never all on one enqueue
if claimed == batch then
  if #rcall('ZRANGEBYSCORE', due_key, '-inf', now_s, 'LIMIT', 0, 1) > 0 then
    rcall('LPUSH', wake_key, '1')
    rcall('LTRIM', wake_key, 0, 0)
  end
else
  -- not full: tell the caller when to look again
  local next_ms
  local first = rcall('ZRANGE', due_key, 0, 0, 'WITHSCORES')
  if #first > 0 then next_ms = tonumber(first[2]) end
  local lease = rcall('ZRANGE', lease_key, 0, 0, 'WITHSCORES')
  if #lease > 0 and lease[1] ~= SENTINEL and (next_ms == nil or tonumber(lease[2]) < next_ms) then
    next_ms = tonumber(lease[2])
  end
  if next_ms ~= nil then reply[2] = string.format('%d', next_ms) end
end
return reply
