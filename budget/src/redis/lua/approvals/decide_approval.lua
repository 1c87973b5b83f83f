-- decide_approval: ARGV = base, id, "approved"|"denied", now_ms. Decides a pending,
-- unexpired record; returns the record's HGETALL as it then stands (empty when unknown).
local rk = ARGV[1] .. "a|" .. ARGV[2]
local h = redis.call("HMGET", rk, "st", "e")
if not h[1] then return {} end
if h[1] == "pending" and tonumber(h[2]) > tonumber(ARGV[4]) then
  redis.call("HSET", rk, "st", ARGV[3], "d", ARGV[4])
end
return redis.call("HGETALL", rk)
