--[[ schedule: enqueue a periodic job's runs, each slot at most once however many schedulers call.
The `periodic` hash keeps, per periodic job name, the latest slot enqueued and the fingerprint
of the schedule that computed it. No other script touches it: it outlives the run's ack, cancel
and purge, so a slot whose run is finished and gone is still never enqueued again. A fingerprint
other than the stored one means the schedule was changed: the old marker no longer counts.
KEYS[1] due       (zset)  job id -> due time ms
KEYS[2] payload   (hash)  job id -> payload
KEYS[3] wake      (list)  wake-up tokens for consumers blocked in a long-poll (at most 1)
KEYS[4] periodic  (hash)  periodic job name -> "<latest slot enqueued, ms> <schedule fingerprint>"
ARGV[1] now        (ms)     TEST ONLY override of the server clock; "" = use TIME
ARGV[2] name       (string) the periodic job's name
ARGV[3] spec       (string) the schedule's fingerprint (no spaces)
ARGV[4] payload    (bytes)  every run's payload
ARGV[5] catchup    (ms)     a past slot to run once, due at once, if newer than the marker: the
                            missed-run policy "run_once"; "" = none
ARGV[6] catchup_id (string) its job id ("<name>@<slot>")
ARGV[7] cold       (flag)   "1": without a marker here, still run the catch-up (a sharded queue's
                            client found the job's marker in another shard); "0": only with one
ARGV[8] upcoming   (ms)     the next slot: enqueued, due at that time, if newer than the marker; "" = none
ARGV[9] upcoming_id (string) its job id
ARGV[10] current   (ms)     the schedule's latest slot at or before the caller's now ("none": it has
                            none), sent with the plan so this script can check the caller's clock:
                            unless current <= now < upcoming by this script's now, the plan was made
                            by a clock that runs ahead or behind, and nothing is stored (a clock ahead
                            would enqueue a future slot and move the marker past the slots between);
                            "" or absent = no check
Returns: array of 4: catch-up stored (1/0), upcoming stored (1/0), the server's now (ms, integer
  string), and 1 if the plan was refused for the caller's clock (else 0): the caller then plans
  again from the now returned. A slot not newer than the marker, or whose id exists in the queue
  (or is dequeue.lua's reserved SENTINEL), is not stored.
Cost: O(log N); at most 11 redis.call. Wakes one blocked consumer when a run becomes the earliest due.
]]
local rcall = redis.call
local SENTINEL = '~delayq~sentinel~keeps-lease-and-meta-in-fast-encodings~never-a-job-id~'
local due_key, payload_key, wake_key, periodic_key = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local name, spec, payload = ARGV[2], ARGV[3], ARGV[4]
local catchup, catchup_id, cold = ARGV[5], ARGV[6], ARGV[7]
local upcoming, upcoming_id = ARGV[8], ARGV[9]
local current = ARGV[10] or ''

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

-- the server's clock decides (DESIGN rule 1): a plan made for another "now" stores nothing
if current ~= '' then
  local ahead = current ~= 'none' and tonumber(current) > now
  local behind = upcoming ~= '' and tonumber(upcoming) <= now
  if ahead or behind then return {0, 0, now_s, 1} end
end

local last
local marker = rcall('HGET', periodic_key, name)
if marker then
  local slot, fingerprint = string.match(marker, '^(%d+) (.*)$')
  if fingerprint == spec then last = tonumber(slot) end
end

local function store(slot, id)
  -- payload before score, as enqueue.lua writes; dequeue.lua's reserved SENTINEL is never a job
  if id == SENTINEL or rcall('HGET', payload_key, id) then return 0 end
  local score = string.format('%d', slot)
  local head = rcall('ZRANGE', due_key, 0, 0, 'WITHSCORES')
  rcall('HSET', payload_key, id, payload)
  rcall('ZADD', due_key, score, id)
  if #head == 0 or tonumber(head[2]) > slot then wake() end
  return 1
end

local result = {0, 0, now_s, 0}
local newest = last
if catchup ~= '' and (last ~= nil or cold == '1') then
  local slot = tonumber(catchup)
  if last == nil or slot > last then
    result[1] = store(slot, catchup_id)
    newest = slot
  end
end
if upcoming ~= '' then
  local slot = tonumber(upcoming)
  if newest == nil or slot > newest then
    result[2] = store(slot, upcoming_id)
    newest = slot
  end
end
-- the marker last: a call stopped before it leaves stored runs whose ids keep them from doubling
if newest ~= nil and newest ~= last then
  rcall('HSET', periodic_key, name, string.format('%d', newest) .. ' ' .. spec)
end
return result
