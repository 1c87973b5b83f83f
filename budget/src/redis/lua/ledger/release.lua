-- release: ARGV = base, id, now_ms, retention_ms.
-- Returns {"released", replayed} | {"expired"} | {"committed", actual} | {"notfound"}.
local base, id = ARGV[1], ARGV[2]
local retention = tonumber(ARGV[4])
local rk = base .. "r|" .. id
local h = redis.call("HMGET", rk, "st", "g", "lines", "a")
local st = h[1]
if not st then return {"notfound"} end
if st == "active" then
  apply(base, h[3], -tonumber(h[2]), 0)
  finish(base, id, rk, retention, "st", "released")
  return {"released", 0}
elseif st == "released" then
  return {"released", 1}
elseif st == "expired" then
  return {"expired"}
end
return {"committed", tonumber(h[4])}
