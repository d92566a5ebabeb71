--[[ cancel: remove a job wherever it is (ready, delayed, in flight or dead), with all its data.
A worker holding the job finds its lock lost (ack/nack/extend answer False).
KEYS[1] due      (zset)  job id -> due time ms
KEYS[2] lease    (zset)  claimed job id -> lock expiry ms
KEYS[3] payload  (hash)  job id -> payload
KEYS[4] meta     (hash)  job id -> the claims it used up (lapsed or nacked), when any
KEYS[5] dead     (zset)  dead-lettered job id -> time it died ms
KEYS[6] errors   (hash)  job id -> last error text
KEYS[7] wake     (list)  long-poll wake-up tokens (deleted with an idle queue)
KEYS[8] claims   (zset)  the claims registry (see dequeue.lua; deleted with an idle queue)
ARGV[1] now      (ms)    not read (cancel needs no clock): every script takes now in ARGV[1]
ARGV[2] id
Returns: integer, 1 if the job existed, else 0 (and 0 for dequeue.lua's reserved SENTINEL,
  which is left where it is).
Cost: O(log N); at most 12 redis.call.
]]
local rcall = redis.call
local SENTINEL = '~delayq~sentinel~keeps-lease-and-meta-in-fast-encodings~never-a-job-id~'
local due_key, lease_key, payload_key, meta_key = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local dead_key, errors_key, wake_key, claims_key = KEYS[5], KEYS[6], KEYS[7], KEYS[8]
local id = ARGV[2]
if id == SENTINEL then return 0 end

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

-- scores go first and the payload last, so a stop half-way leaves at most an unscheduled payload
rcall('ZREM', due_key, id)
rcall('ZREM', lease_key, id)
rcall('ZREM', dead_key, id)
rcall('HDEL', meta_key, id)
rcall('HDEL', errors_key, id)
local existed = rcall('HDEL', payload_key, id)
drop_idle()
return existed
