-- cycles remember: KEYS[1] = the answer hash. ARGV = payload, status, body, created_ms,
-- retention_ms, the oldest created_ms still kept.
-- Keeps the answer unless one is kept; returns the kept one's HGETALL, or an empty array
-- when this one was stored.
local kept = redis.call("HGETALL", KEYS[1])
if #kept > 0 then
  local t = redis.call("HGET", KEYS[1], "t")
  if t and tonumber(t) >= tonumber(ARGV[6]) then return kept end
end
redis.call("DEL", KEYS[1])
redis.call("HSET", KEYS[1], "p", ARGV[1], "s", ARGV[2], "b", ARGV[3], "t", ARGV[4])
redis.call("PEXPIRE", KEYS[1], ARGV[5])
return {}
