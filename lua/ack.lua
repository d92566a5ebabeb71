--[[ ack: delete finished jobs whose lock the caller still holds.
A job is acked only if its lease has not expired and its score is the one the claims
registry holds for the token's call (see dequeue.lua), so no later claim replaced it;
otherwise it is left exactly as it is (another worker may hold it). The reserved
SENTINEL (see dequeue.lua) is never acked, whatever token comes with it.
KEYS[1] lease    (zset)  claimed job id -> lock expiry ms
KEYS[2] payload  (hash)  job id -> payload
KEYS[3] meta     (hash)  job id -> the claims it used up (lapsed or nacked), when any
KEYS[4] errors   (hash)  job id -> last error text
KEYS[5] due      (zset)  waiting job id -> due time ms (only counted, for the clean-up)
KEYS[6] wake     (list)  long-poll wake-up tokens (deleted with an idle queue)
KEYS[7] claims   (zset)  the claims registry (see dequeue.lua)
ARGV[1] now      (ms)    TEST ONLY override of the server clock; "" = use TIME
ARGV[2..]        (id, token string) pairs, 1 to 1000, ids distinct (more: an error, nothing changed)
Returns: array of integers: the positions (1..n, in ARGV pair order) of the acks
  refused because the lock was lost, negated when the job is gone (no payload: acked
  or cancelled since); empty when every one was applied.
Cost: O(batch * log L), L = jobs in flight: per call token the pairs name, a ZCOUNT, and for a
  call acked whole (as many pairs as leases at its score) a ZRANGEBYSCORE of exactly those ids
  and a ZREMRANGEBYSCORE; the rest one ZMSCORE; then one HDEL per structure: about 10 redis.call
  for a worker's batch, 2 more for any extended or refused ones, and one per call acked in part.
]]
local rcall = redis.call
local SENTINEL = '~delayq~sentinel~keeps-lease-and-meta-in-fast-encodings~never-a-job-id~'
local lease_key, payload_key, meta_key, errors_key, due_key, wake_key = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local claims_key = KEYS[7]

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

local acked, refused = apply_acks(2, (#ARGV - 1) / 2)
if acked > 0 then drop_idle() end
return refused
