-- Shared helpers, prepended to every budget script. All keys a script touches start with
-- `base`, which carries the tenant's hash tag, so one script stays in one cluster slot.

-- Lua numbers are doubles: format them as plain integers before handing them to Redis
-- (tostring would give "1e+12", which HINCRBY rejects).
local function int(x)
  return string.format("%.0f", x)
end

-- Adds the deltas to reserved (r) and spent (s) of every `scope|window` line of a hold.
local function apply(base, lines, dr, ds)
  for line in string.gmatch(lines, "[^\n]+") do
    local k = base .. "w|" .. line
    if dr ~= 0 then redis.call("HINCRBY", k, "r", int(dr)) end
    if ds ~= 0 then redis.call("HINCRBY", k, "s", int(ds)) end
  end
end

-- Marks a reservation settled and lets it (and its idempotency key) age out.
local function finish(base, id, rk, retention, ...)
  redis.call("ZREM", base .. "exp", id)
  local h = redis.call("HMGET", rk, "idem", "fg")
  local idem = h[1]
  -- A hold nothing replays (the LLM path) is forgotten once committed or released: no
  -- memory per request. A lapsed one is kept, so a late commit is still recognised.
  if h[2] == "1" and select(2, ...) ~= "expired" then
    redis.call("DEL", rk)
    if idem and idem ~= "" then redis.call("DEL", base .. "i|" .. idem) end
    return
  end
  redis.call("HSET", rk, ...)
  redis.call("PEXPIRE", rk, retention)
  if idem and idem ~= "" then redis.call("PEXPIRE", base .. "i|" .. idem, retention) end
end

-- A run scope's window ages out once idle for `run_retention` ms (balances drops it from
-- the index when it finds it gone).
local function touch_run(wk, scope, run_retention)
  if string.find(scope, "/run:", 1, true) then redis.call("PEXPIRE", wk, run_retention) end
end

-- Gives back up to `limit` holds whose expiry is at or before `now`.
local function reap(base, now, limit, retention)
  local ids = redis.call("ZRANGEBYSCORE", base .. "exp", "-inf", int(now), "LIMIT", 0, limit)
  for _, id in ipairs(ids) do
    local rk = base .. "r|" .. id
    local h = redis.call("HMGET", rk, "st", "g", "lines")
    if h[1] == "active" then
      apply(base, h[3], -tonumber(h[2]), 0)
      finish(base, id, rk, retention, "st", "expired")
    else
      redis.call("ZREM", base .. "exp", id)
    end
  end
  return #ids
end

-- The budget of the scope whose six arguments start at ARGV[o] (scope, configured limit or
-- "", configured period, day/week/month window ids): the override wins over the configured
-- budget. Returns nil for an unbudgeted scope, else its window line, limit, period and room.
local function resolve(base, o)
  local scope = ARGV[o]
  local limit, period
  local ov = redis.call("HMGET", base .. "o|" .. scope, "l", "p")
  if ov[1] then
    limit, period = tonumber(ov[1]), ov[2]
  elseif ARGV[o + 1] ~= "" then
    limit, period = tonumber(ARGV[o + 1]), ARGV[o + 2]
  else
    return nil
  end
  local window = "total"
  if period == "day" then window = ARGV[o + 3]
  elseif period == "week" then window = ARGV[o + 4]
  elseif period == "month" then window = ARGV[o + 5] end
  local line = scope .. "|" .. window
  local cur = redis.call("HMGET", base .. "w|" .. line, "s", "r")
  local room = limit - tonumber(cur[1] or "0") - tonumber(cur[2] or "0")
  return {line = line, limit = limit, period = period, room = room, scope = scope}
end
