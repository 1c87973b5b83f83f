-- commit: ARGV = base, id, actual, now_ms, retention_ms.
-- Returns {"committed", actual, after_expiry, replayed} | {"released"} | {"notfound"}.
local base, id = ARGV[1], ARGV[2]
local actual, now, retention = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local rk = base .. "r|" .. id
local h = redis.call("HMGET", rk, "st", "g", "exp", "lines", "a", "late")
local st = h[1]
if not st then return {"notfound"} end
if st == "active" then
  local late = 0
  if now >= tonumber(h[3]) then late = 1 end
  apply(base, h[4], -tonumber(h[2]), actual)
  finish(base, id, rk, retention, "st", "committed", "a", int(actual), "late", late)
  return {"committed", actual, late, 0}
elseif st == "expired" then
  -- The reaper already gave the hold back; the money was spent all the same.
  apply(base, h[4], 0, actual)
  finish(base, id, rk, retention, "st", "committed", "a", int(actual), "late", 1)
  return {"committed", actual, 1, 0}
elseif st == "committed" then
  return {"committed", tonumber(h[5]), tonumber(h[6]), 1}
end
return {"released"}
