--[[ enqueue: store new jobs and schedule them; an id that already exists is left alone.
KEYS[1] due      (zset)  job id -> due time, ms since epoch (server clock)
KEYS[2] payload  (hash)  job id -> payload bytes
KEYS[3] wake     (list)  wake-up tokens for consumers blocked in a long-poll (at most 1)
KEYS[4] waiters  (zset)  long-poll waiter id -> the time it will be back at the latest, ms
ARGV[1] now      (ms)    TEST ONLY override of the server clock; "" = use TIME
ARGV[2] mode     "rel": ARGV[3] is a delay from the server's now; "abs": an absolute time
ARGV[3] when     (ms)    delay or absolute due time, an integer
ARGV[4..]        (id, payload) pairs, at most 1000 pairs (the client's batch cap)
Returns: array of integers, one per pair in order: 1 = stored, 0 = the id already
  exists in this queue (ready, delayed, in flight or dead) and nothing was changed,
  or it is dequeue.lua's reserved SENTINEL, which is never stored.
Cost: O(batch * log N), N = jobs in the queue; at most 8 redis.call per batch.
Wake-up: when the new jobs are due before every job already waiting and before
  every long-poll waiter will be back (see dequeue.lua), one token is pushed to
  `wake` (the list is capped at one token), so one consumer blocked in
  dequeue(wait=...) wakes to claim them or to watch for their due time.
Write order: payload before score, so a call stopped half-way can leave an
  unscheduled payload (invisible, removed by cancel/purge) but never a scheduled
  job without its payload.
]]
local rcall = redis.call
local SENTINEL = '~delayq~sentinel~keeps-lease-and-meta-in-fast-encodings~never-a-job-id~'
local due_key, payload_key, wake_key, waiters_key = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local mode, when = ARGV[2], tonumber(ARGV[3])

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

local at = when
if mode ~= 'abs' then at = now + when end
local score = string.format('%d', at)

local n = (#ARGV - 3) / 2
local ids = {}
for i = 1, n do ids[i] = ARGV[2 + 2 * i] end
local existing = rcall('HMGET', payload_key, unpack(ids))

local result, zargs, hargs = {}, {}, {}
for i = 1, n do
  if existing[i] or ids[i] == SENTINEL then
    result[i] = 0
  else
    result[i] = 1
    zargs[#zargs + 1] = score
    zargs[#zargs + 1] = ids[i]
    hargs[#hargs + 1] = ids[i]
    hargs[#hargs + 1] = ARGV[3 + 2 * i]
  end
end
if #hargs > 0 then
  local head = rcall('ZRANGE', due_key, 0, 0, 'WITHSCORES')
  rcall('HSET', payload_key, unpack(hargs))
  rcall('ZADD', due_key, unpack(zargs))
  if #head == 0 or tonumber(head[2]) > at then wake_before(at) end
end
return result
