-- outbox done: KEYS[1] = the due set; ARGV = base, id, now_ms, retention_ms. The item leaves
-- the due set; its hash stays (without the body) for the retention, so the id is not queued again.
local ik = ARGV[1] .. "i|" .. ARGV[2]
if redis.call("ZREM", KEYS[1], ARGV[2]) == 1 then
  redis.call("HSET", ik, "done", ARGV[3])
  redis.call("HDEL", ik, "b")
  redis.call("PEXPIRE", ik, ARGV[4])
end
return 1
