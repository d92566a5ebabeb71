--[[ dequeue: optionally ack a finished batch, then claim up to `batch` due jobs.
Each claimed job gets a lease: its id moves from `due` to `lease`, scored by the
lock's expiry, and its `meta` becomes "<attempts>:<token>". The lease is the
job's lock: it is held while `meta` equals the holder's token string and the
expiry is in the future. A job whose lease expired is moved back to `due` (at
its expiry time) by the next dequeue, so a dead worker's jobs come back by
themselves. A job claimed max_attempts times and not acked goes to `dead`
instead of being delivered again.
Dead letters never crowd due jobs out of a batch: an expired lease already
claimed max_attempts times goes straight to `dead` when it is swept (it is not
moved back to `due`), and the claim reads on past the jobs it dead-letters (ones
left in `due` over the limit: a lapsed lease rescheduled, a job nacked through a
queue with a higher max_attempts) or drops (no payload). So a call returns a
full batch whenever that many jobs are claimable, except that it passes over at
most DEAD_CAP = 1000 jobs (sweep and claim together); stopped there with jobs
due, it reports next_ms <= now_ms, and a long-poll looks again at once.
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
KEYS[8] waiters  (zset)  long-poll waiter id -> the time it will be back at the latest, ms
KEYS[9] paused   (hash)  exists while the queue is paused (pause.lua): acks only, no claims
ARGV[1] now          (ms)    TEST ONLY override of the server clock; "" = use TIME
ARGV[2] batch        (count) 1..1000, jobs to claim at most
ARGV[3] lock_ttl     (ms)    lease length
ARGV[4] token        (string) random per call; job i's token string is "<attempts>:<token>"
ARGV[5] max_attempts (count) 0 = unlimited
ARGV[6] ack_count    (count) k, jobs to ack (0..1000), checked as ack.lua checks them
                             (SENTINEL is never acked)
ARGV[7..6+2k]        (id, token string) pairs to ack
ARGV[7+2k]   waiter       (string) the caller's long-poll id; "" (or absent) = not a long-poll
ARGV[8+2k]   back_ms      (ms)    a waiter that claims nothing will call again within this (0 = it
                                  leaves); it blocks on `wake` in between
ARGV[9+2k]   near_ms      (ms)    a waiter watches E anyway when E is this close (it could not
                                  block on `wake` for that short a time, as BLPOP times out late)
Returns: flat array: now_ms, next_ms, refused, dead_lettered, then for each claimed
  job id, payload, attempts, due_ms. now_ms/next_ms/due_ms are integer strings,
  dead_lettered and attempts integers; due_ms is when the job came due (for a
  redelivered job, when its previous lease expired). refused is a nested array of
  integers: the positions (1..k, in ARGV order) of the acks refused because the
  lock was lost, empty when all k were applied; a position is negated when the
  job has no meta left (gone: acked or cancelled since, as for a caller that
  re-sends an ack whose first reply it lost). next_ms is "" when the batch was filled,
  otherwise the earliest time a job becomes due or a lease expires ("" if none);
  for a waiter that claimed nothing, next_ms is that time only if the waiter is to
  watch for it, and "" when another waiter is back by then (it waits for a token).
  While paused: now_ms, now_ms + 1000 (look again in a second), refused, 0, no jobs; a
  long-poll waiter stays registered in `waiters`, back within the second.
Cost: O(log N + batch + k + log W), W = waiters: ZRANGEBYSCORE on lease and on due,
  2 HMGET, then one multi-member ZADD/HSET/ZREM/HDEL per structure; no per-job
  redis.call; section 5 adds at most 7 redis.call.
  Passing over P jobs (P <= DEAD_CAP) adds O(P): the sweep and the claim each read
  further pages only while the batch is short, each page asking for the jobs still
  missing plus all passed over so far, so every further page at least doubles P:
  at most 1 + log2(P + 1) pages (3 redis.call each) and 2 * (batch + P) ids read
  per section.
Wake-ups (DESIGN rule 10): every waiter is registered in `waiters` with the time it
  will be back at the latest. Whenever waiters block, one of them is back by the
  earliest claimable time E (the due head, or the earliest lease expiry) or a token
  is in `wake`: a waiter that would be the first back watches E (it gets next_ms),
  and so does one for which E is within near_ms; the others wait for a token. A
  call that leaves E earlier than every waiter's return (a claim's new leases, a
  batch that leaves due jobs, the watcher leaving) pushes one token, so one waiter
  re-reads; enqueue, nack and reschedule do the same for a new earlier job. A busy
  consumer that claims what the waiters expect wakes nobody.
]]
local rcall = redis.call
local SENTINEL = '~delayq~sentinel~keeps-lease-and-meta-in-fast-encodings~never-a-job-id~'
local due_key, lease_key, payload_key, meta_key = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local dead_key, errors_key, wake_key, waiters_key, paused_key = KEYS[5], KEYS[6], KEYS[7], KEYS[8], KEYS[9]
local batch, ttl, token = tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4]
local max_attempts, ack_count = tonumber(ARGV[5]), tonumber(ARGV[6])
local waiter, back_ms = ARGV[7 + 2 * ack_count] or '', tonumber(ARGV[8 + 2 * ack_count] or '0')
local near_ms = tonumber(ARGV[9 + 2 * ack_count] or '0')

-- shared fragment: clock
local now = tonumber(ARGV[1])
if now == nil then
  local t = rcall('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local now_s = string.format('%d', now)
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

-- 1. the acks: checked and applied first; the keys they may leave idle are dropped only at
-- the end, after the claims have refilled them (see the header)
local acked, refused = 0, {}
if ack_count > 0 then acked, refused = apply_acks(7, ack_count) end

-- 1b. pause (pause.lua, resume.lua): the acks above are applied, nothing is claimed, and the
-- idle keys go as in 4; next_ms one second ahead makes a long-poll look again by itself
if rcall('EXISTS', paused_key) == 1 then
  if acked > 0 then drop_idle() end
  -- a waiter stays registered, back within the second: after a resume, the waiter that claims
  -- then sees the others, and wakes one when it leaves jobs claimable (section 5)
  if waiter ~= '' and back_ms > 0 then
    local back_at = now + math.min(back_ms, 1000)
    rcall('ZADD', waiters_key, string.format('%d', back_at), waiter)
    -- gone once the last registered waiter is due back, as in section 5 (and with its commands:
    -- the README's least-privilege ACL names no others)
    local last = rcall('ZRANGE', waiters_key, -1, -1, 'WITHSCORES')
    rcall('PEXPIRE', waiters_key, math.max(tonumber(last[2]) - now, 0) + 1000)
  elseif waiter ~= '' then
    rcall('ZREM', waiters_key, waiter)
  end
  return {now_s, string.format('%d', now + 1000), refused, 0}
end

-- 2. the sweep: expired leases are due again, at the time their lock expired (meta keeps
-- the attempts; its stale token no longer matters, as the lease is gone), except those
-- claimed max_attempts times, which go straight to `dead` and so never take a place in
-- the claim. At most `batch` go back to `due`; further pages only past dead-lettered ones
-- (see Cost), `passed` counting the jobs this call passes over, DEAD_CAP at most.
local DEAD_CAP = 1000
local passed, dead_lettered = 0, 0
do
  local back, gone, dead_args = {}, {}, {}
  local moved, g, d = 0, 0, 0
  local offset, want = 0, batch
  while true do
    local page = rcall('ZRANGEBYSCORE', lease_key, '-inf', now_s, 'WITHSCORES', 'LIMIT', offset, want)
    local m = #page / 2
    if m == 0 then break end
    local metas = {}
    if max_attempts > 0 then
      local ids = {}
      for i = 1, m do ids[i] = page[2 * i - 1] end
      metas = rcall('HMGET', meta_key, unpack(ids))
    end
    local stop = false
    for i = 1, m do
      if moved == batch then stop = true; break end
      local id, a = page[2 * i - 1], 0
      if metas[i] then a = tonumber(string.match(metas[i], '^%d+')) end
      if max_attempts > 0 and a >= max_attempts then
        if passed == DEAD_CAP then stop = true; break end
        passed = passed + 1
        dead_args[d + 1] = now_s
        dead_args[d + 2] = id
        d = d + 2
      else
        moved = moved + 1
        back[2 * moved - 1] = page[2 * i]
        back[2 * moved] = id
      end
      g = g + 1
      gone[g] = id
    end
    if stop or moved == batch or m < want then break end
    offset = offset + m
    want = batch - moved + passed
  end
  -- `dead` and `due` are written before the jobs leave `lease`
  if d > 0 then rcall('ZADD', dead_key, unpack(dead_args)) end
  if moved > 0 then rcall('ZADD', due_key, unpack(back)) end
  if g > 0 then rcall('ZREM', lease_key, unpack(gone)) end
  dead_lettered = d / 2
end

-- 3. claim, in pages as the sweep (see Cost): jobs over max_attempts (or without a payload)
-- are passed over, not counted in the batch. Plain counters, not #t + 1 (a length is
-- O(log n) in Lua 5.1), and one random token per call: a (job id, token) pair is still
-- unique per claim.
local reply = {now_s, '', refused, 0}
local r = 4
local claimed = 0
do
  local ids, n = {}, 0  -- what leaves `due`: claimed, dead-lettered or dropped
  local expiry = string.format('%d', now + ttl)
  local lease_args, meta_args, dead_args = {'+inf', SENTINEL}, {SENTINEL, ''}, {}
  local first_claim = '1:' .. token  -- the meta of most claims: built once, not once a job
  local l, d = 2, 0
  local offset, want = 0, batch
  while true do
    local due = rcall('ZRANGEBYSCORE', due_key, '-inf', now_s, 'WITHSCORES', 'LIMIT', offset, want)
    local m = #due / 2
    if m == 0 then break end
    local page = {}
    for i = 1, m do page[i] = due[2 * i - 1] end
    local payloads = rcall('HMGET', payload_key, unpack(page))
    local metas = rcall('HMGET', meta_key, unpack(page))
    local stop = false
    for i = 1, m do
      if claimed == batch then stop = true; break end
      local id, a = page[i], 0
      if metas[i] then a = tonumber(string.match(metas[i], '^%d+')) end
      if not payloads[i] or (max_attempts > 0 and a >= max_attempts) then
        if passed == DEAD_CAP then stop = true; break end
        passed = passed + 1
        -- without a payload: unreachable by the write order of every script; dropped rather
        -- than delivered empty
        if payloads[i] then
          dead_args[d + 1] = now_s
          dead_args[d + 2] = id
          d = d + 2
        end
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
      n = n + 1
      ids[n] = id
    end
    if stop or claimed == batch or m < want then break end
    offset = offset + m
    want = batch - claimed + passed
  end
  -- lease, meta and dead are written before the jobs leave `due`
  if claimed > 0 then
    rcall('ZADD', lease_key, unpack(lease_args))
    rcall('HSET', meta_key, unpack(meta_args))
  end
  if d > 0 then rcall('ZADD', dead_key, unpack(dead_args)) end
  if n > 0 then rcall('ZREM', due_key, unpack(ids)) end
  reply[4] = dead_lettered + d / 2
end

-- 4. with the acks done and nothing claimed in their place, an idle queue drops its keys
if acked > 0 then drop_idle() end

-- 5. wake-ups (see the header)
local waits = waiter ~= '' and claimed == 0 and back_ms > 0
if waiter ~= '' then rcall('ZREM', waiters_key, waiter) end
-- the first of the other waiters to be back
local back = first_back()
-- E, the earliest time anything becomes claimable: not needed by a full batch nobody waits for
local next_ms
if waits or claimed < batch or back ~= nil then
  local first = rcall('ZRANGE', due_key, 0, 0, 'WITHSCORES')
  if #first > 0 then next_ms = tonumber(first[2]) end
  local lease = rcall('ZRANGE', lease_key, 0, 0, 'WITHSCORES')
  if #lease > 0 and lease[1] ~= SENTINEL and (next_ms == nil or tonumber(lease[2]) < next_ms) then
    next_ms = tonumber(lease[2])
  end
end
if waits then
  local at = now + back_ms
  if next_ms ~= nil and next_ms < at and (back == nil or next_ms < back or next_ms - now <= near_ms) then
    at = next_ms  -- the caller watches E: the first back, or E is too near to wait for a token
  else
    next_ms = nil  -- another waiter is back first, or E is beyond this wait: wait for a token
  end
  rcall('ZADD', waiters_key, string.format('%d', at), waiter)
  -- gone once the last registered waiter is due back, should it never come (a dead client)
  local last = rcall('ZRANGE', waiters_key, -1, -1, 'WITHSCORES')
  rcall('PEXPIRE', waiters_key, math.max(tonumber(last[2]) - now, 0) + 1000)
elseif next_ms ~= nil and back ~= nil and next_ms < back then
  wake()
end
if claimed < batch and next_ms ~= nil then reply[2] = string.format('%d', next_ms) end
return reply
