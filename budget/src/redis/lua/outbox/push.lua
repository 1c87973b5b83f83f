-- outbox push: KEYS[1] = the due set; ARGV = base, id, body, now_ms. Queues the item due now
-- unless its hash exists (queued, or delivered and not yet forgotten). Returns 1 if queued.
local ik = ARGV[1] .. "i|" .. ARGV[2]
if redis.call("EXISTS", ik) == 1 then return 0 end
redis.call("HSET", ik, "b", ARGV[3], "n", 0)
redis.call("ZADD", KEYS[1], ARGV[4], ARGV[2])
return 1
