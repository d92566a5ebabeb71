--[[ dequeue: optionally ack a finished batch, then claim up to `batch` due jobs.
Each claimed job gets a lease: its id moves from `due` to `lease`, scored by the
lock's expiry plus a fraction of a millisecond. Every lease of one call has the
same score S, and the claims registry maps the call's random token to S; no two
entries of the registry have the same score (register picks S so). The lease is
the job's lock: a token "<attempts>:<call token>" holds it while the lease has
not expired and its score is the one registered for the token's call (extend.lua
registers "<call token>/<job id>" for the job's new score). A stale token fails:
its call's entry is gone (acked, expired, the queue idle) or has a score that no
other claim's lease can have. So a claim writes nothing per job but its lease.
`meta` counts the claims a job used up (an expired lease, a nack): it is written
only on those rare paths, and a claim reads it only while it exists.
A job whose lease expired is moved back to `due` (at its expiry time) by the
next dequeue, so a dead worker's jobs come back by themselves. A job claimed
max_attempts times and not acked goes to `dead` instead of being delivered again.
Dead letters never crowd due jobs out of a batch: an expired lease already
claimed max_attempts times goes straight to `dead` when it is swept (it is not
moved back to `due`), and the claim reads on past the jobs it dead-letters (ones
left in `due` over the limit: a lapsed lease rescheduled, a job nacked through a
queue with a higher max_attempts) or drops (no payload). So a call returns a
full batch whenever that many jobs are claimable, except that it passes over at
most DEAD_CAP = 1000 jobs (sweep and claim together); stopped there with jobs
due, it reports next_ms <= now_ms, and a long-poll looks again at once.
`lease` always holds SENTINEL (a member longer than 64 bytes, score +inf) while
it exists: it keeps it in Redis's skiplist encoding, where a 100-job ZADD costs
~0.2 us a member instead of ~1.3 us in a listpack; the clean-up that deletes it
(and the registry) when only SENTINEL is left runs after the claims, so a
worker's loop never deletes and rebuilds it. ack/nack/cancel delete it the same way.
KEYS[1] due      (zset)  job id -> due time ms
KEYS[2] lease    (zset)  claimed job id -> lock expiry ms
KEYS[3] payload  (hash)  job id -> payload
KEYS[4] meta     (hash)  job id -> the claims it used up (lapsed or nacked), when any
KEYS[5] dead     (zset)  dead-lettered job id -> time it died ms
KEYS[6] errors   (hash)  job id -> last error text (removed on ack)
KEYS[7] wake     (list)  wake-up tokens for consumers blocked in a long-poll (at most 1)
KEYS[8] waiters  (zset)  long-poll waiter id -> the time it will be back at the latest, ms
KEYS[9] paused   (hash)  exists while the queue is paused (pause.lua): acks only, no claims
KEYS[10] claims  (zset)  the claims registry: call token -> its leases' score, and
                         "<call token>/<job id>" -> the lease score of a job extended since
ARGV[1] now          (ms)    TEST ONLY override of the server clock; "" = use TIME
ARGV[2] batch        (count) 1..1000, jobs to claim at most (else an error, nothing changed)
ARGV[3] lock_ttl     (ms)    lease length, 1..43200000 (else an error, nothing changed)
ARGV[4] token        (string) 16 hex digits, random per call; job i's token is "<attempts>:<token>"
ARGV[5] max_attempts (count) 0 = unlimited
ARGV[6] ack_count    (count) k, jobs to ack (0..1000; more: an error, nothing changed), checked as ack.lua checks them
                             (SENTINEL is never acked)
ARGV[7..6+2k]        (id, token string) pairs to ack
ARGV[7+2k]   waiter       (string) the caller's long-poll id; "" (or absent) = not a long-poll
ARGV[8+2k]   back_ms      (ms)    a waiter that claims nothing will call again within this (0 = it
                                  leaves); it blocks on `wake` in between
ARGV[9+2k]   near_ms      (ms)    a waiter watches E anyway when E is this close (it could not
                                  block on `wake` for that short a time, as BLPOP times out late)
Returns: flat array: now_ms, next_ms, refused, dead_lettered, then for each claimed
  job id, payload, due: due is due_ms for a first claim, else "<due_ms>:<attempts>".
  now_ms/next_ms/due_ms are integer strings, dead_lettered an integer; due_ms is when
  the job came due (for a redelivered job, when its previous lease expired). refused is a nested array of
  integers: the positions (1..k, in ARGV order) of the acks refused because the
  lock was lost, empty when all k were applied; a position is negated when the
  job is gone (no payload: acked or cancelled since, as for a caller that
  re-sends an ack whose first reply it lost). next_ms is "" when the batch was filled,
  otherwise the earliest time a job becomes due or a lease expires ("" if none);
  for a waiter that claimed nothing, next_ms is that time only if the waiter is to
  watch for it, and "" when another waiter is back by then (it waits for a token).
  While paused: now_ms, now_ms + 1000 (look again in a second), refused, 0, no jobs; a
  long-poll waiter stays registered in `waiters`, back within the second.
Cost: O(log N + batch + k + log W + log C), W = waiters, C = claims registered: the acks
  as in ack.lua (a call acked whole is read and removed by its score); the claim
  ZRANGEBYSCOREs `due`, HMGETs the payloads (and `meta`, while it exists), one ZADD to
  `lease` and 3 to 4 calls on the registry; no per-job redis.call; section 5 adds at most 7 redis.call.
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
local claims_key = KEYS[10]
local batch, ttl, token = tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4]
local max_attempts, ack_count = tonumber(ARGV[5]), tonumber(ARGV[6])
local waiter, back_ms = ARGV[7 + 2 * ack_count] or '', tonumber(ARGV[8 + 2 * ack_count] or '0')
local near_ms = tonumber(ARGV[9 + 2 * ack_count] or '0')
-- what the client checks, checked again before anything is written, so a raw call can neither
-- claim more than a batch, nor ask for a lease register() cannot place (an infinite or NaN
-- expiry never moves on), nor name its claims with a token that is not one
if not batch or batch ~= batch or batch < 1 or batch > 1000 or batch % 1 ~= 0 then
  error('batch must be an integer 1..1000, got ' .. tostring(ARGV[2]))
end
if not ttl or ttl ~= ttl or ttl < 1 or ttl > 43200000 then
  error('lock_ttl must be 1..43200000 ms, got ' .. tostring(ARGV[3]))
end
if #token ~= 16 or string.find(token, '[^0-9a-f]') then error('token must be 16 hex digits, got ' .. token) end

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

-- shared fragment: acks
-- the token check of a batch: `count` (id, token) pairs from ARGV[first]; a pair is applied
-- while its lease has not expired and its score is the one the claims registry holds for the
-- token's call (or for this job of it, once extended), never for the SENTINEL; the lease goes
-- first and the payload last, and a call's registry entry once none of its leases is left.
-- A call acked whole (as many pairs as leases at its score: a worker acking what one call
-- claimed) is checked by reading its leases' ids, and they go by score: no score comes back
-- (Redis formats each with %.17g, the dearest part of a check) and no id goes to `lease`.
-- Others are checked by ZMSCORE and go by name. A token's attempts must be the job's (the
-- claims it used up, in meta, and this one): while meta does not exist, every job is on
-- its first claim, so the check is the token's own.
-- Returns how many were applied, and the positions (1..count) of the refused ones, negated
-- when the job is gone (no payload: acked or cancelled since; the SENTINEL is not)
local function apply_acks(first, count)
  -- at most 1000 pairs (the client's cap), refused before anything is written: a call acked whole
  -- loses its leases first, and the HDELs after would fail to unpack (Lua's limit is 8000
  -- values), leaving payloads in no structure
  if count > 1000 then error('at most 1000 acks a call, got ' .. count) end
  local ids, calls, atts, slot, listed, per, n = {}, {}, {}, {}, {}, {}, 0
  local prev_tok, k, att
  for i = 1, count do
    ids[i] = ARGV[first + 2 * i - 2]
    local tok = ARGV[first + 2 * i - 1]
    if tok ~= prev_tok then
      prev_tok = tok
      att = tonumber(string.match(tok, '^%d+'))
      local call = string.sub(tok, -16)
      k = slot[call]
      if not k then
        n = n + 1
        k = n
        slot[call], listed[n], per[n] = n, call, 0
      end
    end
    calls[i] = k
    atts[i] = att
    per[k] = per[k] + 1
  end
  -- the claims each job used up, while any job has used one up
  local used
  if rcall('EXISTS', meta_key) == 1 then used = rcall('HMGET', meta_key, unpack(ids)) end
  local function named(i)
    if not used then return atts[i] == 1 end
    local u = used[i]
    return atts[i] == (u and tonumber(string.match(u, '^%d+')) or 0) + 1
  end
  local reg = rcall('ZMSCORE', claims_key, unpack(listed))
  -- a call's registered score, if its leases have not expired; and for a call with as many
  -- pairs as leases at that score, the set of their ids (at most its batch: no other lease
  -- has that score)
  local live, whole, intact = {}, {}, {}
  for c = 1, n do
    local r = reg[c]
    if r and math.floor(tonumber(r)) > now then
      live[c] = r
      if rcall('ZCOUNT', lease_key, r, r) == per[c] then
        local set = {}
        local got = rcall('ZRANGEBYSCORE', lease_key, r, r)
        for j = 1, #got do set[got[j]] = true end
        whole[c], intact[c] = set, true
      end
    end
  end
  local ok, of, acked, done, settled = {}, {}, 0, {}, {}
  local ask, a = {}, 0
  for i = 1, count do
    local c, id = calls[i], ids[i]
    local set = whole[c]
    if set and set[id] and id ~= SENTINEL and (not used and atts[i] == 1 or used and named(i)) then
      set[id] = nil
      settled[c] = true
      acked = acked + 1
      ok[acked], of[acked] = id, c
    else
      if set then intact[c] = false end
      a = a + 1
      ask[a] = i
    end
  end
  -- the others: ZMSCORE, and for the leases not at their call's score (extended since the
  -- claim, or not held) the registry entries of extended jobs
  local refused, extended = {}, {}
  if a > 0 then
    local asked = {}
    for j = 1, a do asked[j] = ids[ask[j]] end
    local exp = rcall('ZMSCORE', lease_key, unpack(asked))
    local odd, xs, o = {}, {}, 0
    local held = {}
    for j = 1, a do
      local e, c, id = exp[j], calls[ask[j]], asked[j]
      if e and id ~= SENTINEL and not done[id] and math.floor(tonumber(e)) > now and named(ask[j]) then
        if live[c] and (e == live[c] or tonumber(live[c]) == tonumber(e)) then
          -- held at its call's score; but read there (whole) and not matched: a second pair of
          -- a job already acked above
          held[j], done[id] = not whole[c], true
          settled[c] = true
        else
          o = o + 1
          odd[o], xs[o] = j, listed[c] .. '/' .. id
        end
      end
    end
    if o > 0 then
      local ext = rcall('ZMSCORE', claims_key, unpack(xs))
      for q = 1, o do
        local j = odd[q]
        if ext[q] and tonumber(ext[q]) == tonumber(exp[j]) and not done[asked[j]] then
          held[j], done[asked[j]] = true, true
          extended[#extended + 1] = xs[q]
        end
      end
    end
    local bad = {}
    for j = 1, a do
      if held[j] then
        local id = asked[j]
        acked = acked + 1
        ok[acked], of[acked] = id, 0
      else
        bad[#bad + 1] = j
      end
    end
    if #bad > 0 then
      local gone = {}
      for q = 1, #bad do gone[q] = asked[bad[q]] end
      local payloads = rcall('HMGET', payload_key, unpack(gone))
      for q = 1, #bad do
        local i = ask[bad[q]]
        if payloads[q] or gone[q] == SENTINEL then refused[q] = i else refused[q] = -i end
      end
    end
  end
  if acked > 0 then
    local by_name, b = {}, 0
    for j = 1, acked do
      if not intact[of[j]] then
        b = b + 1
        by_name[b] = ok[j]
      end
    end
    local drop = {}
    for c = 1, n do
      if intact[c] then
        rcall('ZREMRANGEBYSCORE', lease_key, live[c], live[c])
        drop[#drop + 1] = listed[c]
      end
    end
    if b > 0 then rcall('ZREM', lease_key, unpack(by_name)) end
    if used then rcall('HDEL', meta_key, unpack(ok)) end
    if rcall('EXISTS', errors_key) == 1 then rcall('HDEL', errors_key, unpack(ok)) end
    rcall('HDEL', payload_key, unpack(ok))
    for j = 1, #extended do drop[#drop + 1] = extended[j] end
    for c = 1, n do
      local r = live[c]
      if settled[c] and not intact[c] and #rcall('ZRANGEBYSCORE', lease_key, r, r, 'LIMIT', 0, 1) == 0 then
        drop[#drop + 1] = listed[c]
      end
    end
    if #drop > 0 then rcall('ZREM', claims_key, unpack(drop)) end
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

-- 2. the sweep: expired leases are due again, at the time their lock expired (meta counts
-- the lapsed claim; its registry entry no longer matters, as the lease is gone), except those
-- claimed max_attempts times, which go straight to `dead` and so never take a place in
-- the claim. At most `batch` go back to `due`; further pages only past dead-lettered ones
-- (see Cost), `passed` counting the jobs this call passes over, DEAD_CAP at most.
local DEAD_CAP = 1000
local passed, dead_lettered = 0, 0
do
  local back, gone, dead_args, counts = {}, {}, {}, {}
  local moved, g, d = 0, 0, 0
  local offset, want = 0, batch
  while true do
    local page = rcall('ZRANGEBYSCORE', lease_key, '-inf', lapsed, 'WITHSCORES', 'LIMIT', offset, want)
    local m = #page / 2
    if m == 0 then break end
    local metas = {}
    if rcall('EXISTS', meta_key) == 1 then
      local ids = {}
      for i = 1, m do ids[i] = page[2 * i - 1] end
      metas = rcall('HMGET', meta_key, unpack(ids))
    end
    local stop = false
    for i = 1, m do
      if moved == batch then stop = true; break end
      -- the lapsed claim counts: a = the claims made so far, this one included
      local id, a = page[2 * i - 1], 1
      if metas[i] then a = tonumber(string.match(metas[i], '^%d+')) + 1 end
      if max_attempts > 0 and a >= max_attempts then
        if passed == DEAD_CAP then stop = true; break end
        passed = passed + 1
        dead_args[d + 1] = now_s
        dead_args[d + 2] = id
        d = d + 2
      else
        moved = moved + 1
        back[2 * moved - 1] = string.format('%d', math.floor(tonumber(page[2 * i])))
        back[2 * moved] = id
      end
      g = g + 1
      gone[g] = id
      counts[2 * g - 1] = id
      counts[2 * g] = a
    end
    if stop or moved == batch or m < want then break end
    offset = offset + m
    want = batch - moved + passed
  end
  -- meta, `dead` and `due` are written before the jobs leave `lease`
  if g > 0 then rcall('HSET', meta_key, unpack(counts)) end
  if d > 0 then rcall('ZADD', dead_key, unpack(dead_args)) end
  if moved > 0 then rcall('ZADD', due_key, unpack(back)) end
  -- the swept leases are the lowest-scored of `lease`: removed by rank, not by name
  if g > 0 then rcall('ZREMRANGEBYRANK', lease_key, 0, g - 1) end
  dead_lettered = d / 2
end

-- 3. claim, in pages as the sweep (see Cost): jobs over max_attempts (or without a payload)
-- are passed over, not counted in the batch. Plain counters, not #t + 1 (a length is
-- O(log n) in Lua 5.1). Nothing is written per job but its lease: every lease of this call
-- has the same score, the expiry plus a fraction of a millisecond that no other entry of the
-- claims registry has, registered under the call's token (see the header).
local reply = {now_s, '', refused, 0}
local r = 4
local claimed = 0
do
  local n = 0  -- how many leave `due` (its head): claimed, dead-lettered or dropped
  local lease_args, dead_args = {'+inf', SENTINEL}, {}
  local l, d = 2, 0
  local counted = rcall('EXISTS', meta_key) == 1
  local offset, want = 0, batch
  while true do
    local due = rcall('ZRANGEBYSCORE', due_key, '-inf', now_s, 'WITHSCORES', 'LIMIT', offset, want)
    local m = #due / 2
    if m == 0 then break end
    local page = {}
    for i = 1, m do page[i] = due[2 * i - 1] end
    local payloads = rcall('HMGET', payload_key, unpack(page))
    local metas = {}
    if counted then metas = rcall('HMGET', meta_key, unpack(page)) end
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
        lease_args[l + 2] = id
        l = l + 2
        reply[r + 1] = id
        reply[r + 2] = payloads[i]
        -- three values a job, not four: most claims are first claims
        if a == 1 then reply[r + 3] = due[2 * i] else reply[r + 3] = due[2 * i] .. ':' .. a end
        r = r + 3
      end
      n = n + 1
    end
    if stop or claimed == batch or m < want then break end
    offset = offset + m
    want = batch - claimed + passed
  end
  -- the registry and the leases are written before the jobs leave `due`
  if claimed > 0 then
    local score = register(now + ttl, token, token)
    for k = 3, l, 2 do lease_args[k] = score end
    rcall('ZADD', lease_key, unpack(lease_args))
  end
  if d > 0 then rcall('ZADD', dead_key, unpack(dead_args)) end
  -- what leaves `due` is its head, ranks 0 to n - 1 (the pages read it in order from the
  -- start): removed by rank, which costs no argument per job
  if n > 0 then rcall('ZREMRANGEBYRANK', due_key, 0, n - 1) end
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
    next_ms = math.floor(tonumber(lease[2]))
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
