-- cycles extend: KEYS[1] = the record hash. ARGV = from_ms, to_ms.
-- Returns {"updated" | "unchanged", HGETALL} or {"notfound"}: only an active record whose
-- expiry is still from_ms moves.
local h = redis.call("HMGET", KEYS[1], "status", "expires_ms")
if not h[1] then return {"notfound"} end
if h[1] ~= "active" or h[2] ~= ARGV[1] then
  return {"unchanged", redis.call("HGETALL", KEYS[1])}
end
redis.call("HSET", KEYS[1], "expires_ms", ARGV[2])
return {"updated", redis.call("HGETALL", KEYS[1])}
