-- extend: ARGV = base, id, now_ms, ttl_ms.
-- Returns {"extended", expires_ms} | {"expired"} | {"settled"} | {"notfound"}.
local base, id = ARGV[1], ARGV[2]
local now, ttl = tonumber(ARGV[3]), tonumber(ARGV[4])
local rk = base .. "r|" .. id
local h = redis.call("HMGET", rk, "st", "exp")
local st = h[1]
if not st then return {"notfound"} end
if st == "active" and now < tonumber(h[2]) then
  local expires = now + ttl
  redis.call("HSET", rk, "exp", int(expires))
  redis.call("ZADD", base .. "exp", int(expires), id)
  return {"extended", expires}
elseif st == "active" or st == "expired" then
  return {"expired"}
end
return {"settled"}
