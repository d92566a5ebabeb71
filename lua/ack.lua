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
ARGV[2..]        (id, token string) pairs, 1 to 1000, ids distinct
Returns: array of integers: the positions (1..n, in ARGV pair order) of the acks
  refused because the lock was lost, negated when the job is gone (no payload: acked
  or cancelled since); empty when every one was applied.
Cost: O(batch * log L), L = jobs in flight; about 10 redis.call per batch, and one more
  for each ack refused or of a job extended since its claim.
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
-- Returns how many were applied, and the positions (1..count) of the refused ones, negated
-- when the job is gone (no payload: acked or cancelled since; the SENTINEL is not)
local function apply_acks(first, count)
  local ids, calls, slot, listed, n = {}, {}, {}, {}, 0
  local prev_tok, prev_call
  for i = 1, count do
    ids[i] = ARGV[first + 2 * i - 2]
    local tok = ARGV[first + 2 * i - 1]
    if tok ~= prev_tok then
      prev_tok, prev_call = tok, string.sub(tok, -16)
      if not slot[prev_call] then
        n = n + 1
        slot[prev_call], listed[n] = n, prev_call
      end
    end
    calls[i] = prev_call
  end
  local exp = rcall('ZMSCORE', lease_key, unpack(ids))
  local reg = rcall('ZMSCORE', claims_key, unpack(listed))
  -- a call's registered score, if its leases have not expired: the common case is one call,
  -- so this is worked out once a call, and a job's check is one string comparison
  local live = {}
  for k = 1, n do
    if reg[k] and math.floor(tonumber(reg[k])) > now then live[k] = reg[k] end
  end
  local ok, acked, bad, extended, settled = {}, 0, {}, {}, {}
  for i = 1, count do
    local e, k = exp[i], slot[calls[i]]
    local held = false
    if e and e == live[k] and ids[i] ~= SENTINEL then
      held = true
      settled[k] = true
    elseif e and ids[i] ~= SENTINEL and math.floor(tonumber(e)) > now then
      if live[k] and tonumber(live[k]) == tonumber(e) then
        held = true
        settled[k] = true
      else  -- the rare path: extended since the claim, or not held
        local x = calls[i] .. '/' .. ids[i]
        local s = rcall('ZSCORE', claims_key, x)
        if s and tonumber(s) == tonumber(e) then
          held = true
          extended[#extended + 1] = x
        end
      end
    end
    if held then
      acked = acked + 1
      ok[acked] = ids[i]
    else
      bad[#bad + 1] = i
    end
  end
  local refused = {}
  if #bad > 0 then
    local asked = {}
    for k = 1, #bad do asked[k] = ids[bad[k]] end
    local payloads = rcall('HMGET', payload_key, unpack(asked))
    for k = 1, #bad do
      if payloads[k] or asked[k] == SENTINEL then refused[k] = bad[k] else refused[k] = -bad[k] end
    end
  end
  if acked > 0 then
    rcall('ZREM', lease_key, unpack(ok))
    if rcall('EXISTS', meta_key) == 1 then rcall('HDEL', meta_key, unpack(ok)) end
    if rcall('EXISTS', errors_key) == 1 then rcall('HDEL', errors_key, unpack(ok)) end
    rcall('HDEL', payload_key, unpack(ok))
    if #extended > 0 then rcall('ZREM', claims_key, unpack(extended)) end
    for k = 1, n do
      local r = live[k]
      if settled[k] and #rcall('ZRANGEBYSCORE', lease_key, r, r, 'LIMIT', 0, 1) == 0 then
        rcall('ZREM', claims_key, listed[k])
      end
    end
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
