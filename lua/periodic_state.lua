--[[ periodic_state: the markers of periodic jobs: the latest slot each one enqueued, with its schedule.
KEYS[1] periodic  (hash)  periodic job name -> "<latest slot enqueued, ms> <schedule fingerprint>"
ARGV[1] now       (ms)     not read (periodic_state needs no clock): every script takes now in ARGV[1]
ARGV[2]  name      (string) a periodic job name; ARGV[3..] more of them, at most 1000 in all
Returns: array, one entry per name in order: the marker string, or false (nil) where there is none.
Cost: O(names); 1 redis.call.
]]
local rcall = redis.call
local periodic_key = KEYS[1]
return rcall('HMGET', periodic_key, unpack(ARGV, 2))
