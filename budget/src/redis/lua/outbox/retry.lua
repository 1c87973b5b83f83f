-- outbox retry: KEYS[1] = the due set; ARGV = base, id, due_ms. Counts a failed attempt and
-- makes an undelivered item due again at due_ms.
if redis.call("ZSCORE", KEYS[1], ARGV[2]) then
  redis.call("ZADD", KEYS[1], ARGV[3], ARGV[2])
  redis.call("HINCRBY", ARGV[1] .. "i|" .. ARGV[2], "n", 1)
end
return 1
