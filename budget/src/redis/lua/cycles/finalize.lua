-- cycles finalize: KEYS[1] = the record hash. ARGV = status, at_ms, charged or "",
-- "1" and the commit's metadata, or "0".
-- Returns {"updated" | "unchanged", HGETALL} or {"notfound"}: only an active record ends.
local st = redis.call("HGET", KEYS[1], "status")
if not st then return {"notfound"} end
if st ~= "active" then return {"unchanged", redis.call("HGETALL", KEYS[1])} end
redis.call("HSET", KEYS[1], "status", ARGV[1], "finalized_ms", ARGV[2])
if ARGV[3] ~= "" then redis.call("HSET", KEYS[1], "charged", ARGV[3]) end
if ARGV[4] == "1" then redis.call("HSET", KEYS[1], "committed_metadata", ARGV[5]) end
return {"updated", redis.call("HGETALL", KEYS[1])}
