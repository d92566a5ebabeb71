--[[ redrive: put dead-lettered jobs back, due now, attempts and error reset.
KEYS[1] dead     (zset)  dead-lettered job id -> time it died ms
KEYS[2] due      (zset)  job id -> due time ms
KEYS[3] meta     (hash)  job id -> the claims it used up (deleted: attempts reset)
KEYS[4] errors   (hash)
KEYS[5] wake     (list)  wake-up tokens for consumers blocked in a long-poll (at most 1)
ARGV[1] now      (ms)    TEST ONLY override of the server clock; "" = use TIME
ARGV[2] limit    (count) 1..1000, jobs to move at most when no ids are given
ARGV[3..]        ids to redrive (at most 1000); none = the oldest `limit` dead jobs
Returns: integer, jobs moved back (ids that are not dead are skipped, and so is dequeue.lua's
  reserved SENTINEL).
Cost: O(batch * log N); at most 8 redis.call. Wakes one blocked consumer.
]]
local rcall = redis.call
local SENTINEL = '~delayq~sentinel~keeps-lease-and-meta-in-fast-encodings~never-a-job-id~'
local dead_key, due_key, meta_key, errors_key, wake_key = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local limit = tonumber(ARGV[2])

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

local ids = {}
if #ARGV > 2 then
  local asked = {}
  for i = 3, #ARGV do
    if ARGV[i] ~= SENTINEL then asked[#asked + 1] = ARGV[i] end
  end
  if #asked > 0 then
    local scores = rcall('ZMSCORE', dead_key, unpack(asked))
    for i = 1, #asked do
      if scores[i] then ids[#ids + 1] = asked[i] end
    end
  end
else
  ids = rcall('ZRANGE', dead_key, 0, limit - 1)
end
if #ids == 0 then return 0 end
local zargs = {}
for i = 1, #ids do
  zargs[#zargs + 1] = now_s
  zargs[#zargs + 1] = ids[i]
end
rcall('ZADD', due_key, unpack(zargs))
rcall('ZREM', dead_key, unpack(ids))
rcall('HDEL', meta_key, unpack(ids))
rcall('HDEL', errors_key, unpack(ids))
wake()
return #ids
