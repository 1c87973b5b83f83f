-- balances: ARGV = base. Returns {windows, overrides}: windows as flat
-- {scope|window, period, limit, spent, reserved, ...}, overrides as flat {scope, limit, period, ...}.
local base = ARGV[1]
local rows, ovr = {}, {}
for _, line in ipairs(redis.call("SMEMBERS", base .. "idx")) do
  local h = redis.call("HMGET", base .. "w|" .. line, "p", "l", "s", "r")
  if h[1] or h[3] or h[4] then
    rows[#rows + 1] = line
    rows[#rows + 1] = h[1] or "total"
    rows[#rows + 1] = h[2] or "0"
    rows[#rows + 1] = h[3] or "0"
    rows[#rows + 1] = h[4] or "0"
  else
    -- An idle run window that aged out.
    redis.call("SREM", base .. "idx", line)
  end
end
for _, scope in ipairs(redis.call("SMEMBERS", base .. "ovr")) do
  local h = redis.call("HMGET", base .. "o|" .. scope, "l", "p")
  if h[1] then
    ovr[#ovr + 1] = scope
    ovr[#ovr + 1] = h[1]
    ovr[#ovr + 1] = h[2]
  end
end
return {rows, ovr}
