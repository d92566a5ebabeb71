--[[ cancel: remove a job wherever it is (ready, delayed, in flight or dead), with all its data.
A worker holding the job finds its lock lost (ack/nack/extend answer False).
KEYS[1] due      (zset)
KEYS[2] lease    (zset)
KEYS[3] payload  (hash)
KEYS[4] meta     (hash)
KEYS[5] dead     (zset)
KEYS[6] errors   (hash)
KEYS[7] wake     (list)  long-poll wake-up tokens (deleted with an idle queue)
ARGV[1] id
Returns: integer, 1 if the job existed, else 0 (and 0 for dequeue.lua's reserved SENTINEL,
  which is left where it is).
Cost: O(log N); at most 12 redis.call.
]]
local rcall = redis.call
local SENTINEL = '~delayq~sentinel~keeps-lease-and-meta-in-fast-encodings~never-a-job-id~'
local id = ARGV[1]
if id == SENTINEL then return 0 end
-- scores go first and the payload last, so a stop half-way leaves at most an unscheduled payload
rcall('ZREM', KEYS[1], id)
rcall('ZREM', KEYS[2], id)
rcall('ZREM', KEYS[5], id)
rcall('HDEL', KEYS[4], id)
rcall('HDEL', KEYS[6], id)
local existed = rcall('HDEL', KEYS[3], id)
-- lease and meta keep dequeue.lua's SENTINEL while they exist; with only it left, they go
if rcall('ZCARD', KEYS[2]) <= 1 then
  rcall('DEL', KEYS[2])
  if rcall('ZCARD', KEYS[1]) == 0 then rcall('DEL', KEYS[7]) end
end
if rcall('HLEN', KEYS[4]) == 1 then rcall('DEL', KEYS[4]) end
return existed
