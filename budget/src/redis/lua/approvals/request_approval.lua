-- request_approval: ARGV = base, now_ms, retention_ms, id, agent, tool, args_sha256_hex, then
-- field/value pairs of the new record (with "st", "c", "e").
-- Returns {"existing", HGETALL of the live record of the call}, {"conflict"} when the id is
-- taken, or {"new"}.
local base, now, retention = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local id = ARGV[4]
local call = base .. "x|" .. ARGV[5] .. "|" .. ARGV[6] .. "|" .. ARGV[7]
local cur = redis.call("GET", call)
if cur then
  local rk = base .. "a|" .. cur
  local h = redis.call("HMGET", rk, "st", "e")
  if (h[1] == "pending" or h[1] == "approved") and tonumber(h[2]) > now then
    return {"existing", redis.call("HGETALL", rk)}
  end
end
local rk = base .. "a|" .. id
if redis.call("EXISTS", rk) == 1 then return {"conflict"} end
redis.call("HSET", rk, unpack(ARGV, 8))
local h = redis.call("HMGET", rk, "c", "e")
-- Forgotten `retention` after it lapses, like the embedded store's reaper does.
local keep = string.format("%.0f", math.max(tonumber(h[2]) - now + retention, 1))
redis.call("PEXPIRE", rk, keep)
redis.call("SET", call, id, "PX", keep)
redis.call("ZADD", base .. "all", h[1], id)
-- Drop a few index entries whose records are gone, so the index does not grow forever.
for _, old in ipairs(redis.call("ZRANGE", base .. "all", 0, 9)) do
  if redis.call("EXISTS", base .. "a|" .. old) == 0 then redis.call("ZREM", base .. "all", old) end
end
return {"new"}
