-- reserve: ARGV = base, now_ms, id, idem_key|"", amount, min_amount, ttl_ms, retention_ms,
-- reap_limit, dry_run (1: decide only, hold nothing), run_retention_ms, forget (1: delete
-- the hold once committed or released), n, then six arguments per scope (see `resolve`).
-- Returns {"new"|"replay"|"dry", id, decision, granted, tight_scope, tight_room, expires_ms, has_tight,
-- rooms} or {"deny", id, scope, room, rooms}; `rooms` is {scope, room, ...} for every budgeted
-- scope in request order, after the hold (on deny, as they stand), floored at 0.
local base, now = ARGV[1], tonumber(ARGV[2])
local id, idem = ARGV[3], ARGV[4]
local amount, min_amount, ttl = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])
local retention, reap_limit = tonumber(ARGV[8]), tonumber(ARGV[9])
local dry, run_retention = ARGV[10] == "1", tonumber(ARGV[11])
local forget, n = ARGV[12], tonumber(ARGV[13])

local function stored(rid)
  local r = redis.call("HMGET", base .. "r|" .. rid, "dec", "g", "ts", "tr", "exp", "rm", "lines")
  if not r[1] then return nil end
  -- `rm` holds the rooms, space-separated, in the order of the `scope|window` lines; a hold
  -- written before it existed replays no rooms.
  local rooms = {}
  if r[6] then
    local room = string.gmatch(r[6], "%S+")
    for scope in string.gmatch(r[7], "([^|\n]+)|[^\n]*") do
      local v = room()
      if not v then break end
      rooms[#rooms + 1] = scope
      rooms[#rooms + 1] = v
    end
  end
  return {"replay", rid, r[1], tonumber(r[2]), r[3] or "", tonumber(r[4] or "0"), tonumber(r[5]), r[3] and 1 or 0, rooms}
end

if idem ~= "" and not dry then
  local first = redis.call("GET", base .. "i|" .. idem)
  if first then
    local a = stored(first)
    if a then return a end
  end
end
if not dry then
  local again = stored(id)
  if again then return again end
end

reap(base, now, reap_limit, retention)

local lines, tight = {}, nil
for i = 0, n - 1 do
  local entry = resolve(base, 14 + i * 6)
  if entry then
    lines[#lines + 1] = entry
    -- Strictly less: on a tie the broader (earlier) scope is named.
    if tight == nil or entry.room < tight.room then tight = entry end
  end
end

local granted = amount
if tight then
  -- An exhausted or zero-limit scope denies even a free request.
  if tight.room <= 0 then
    granted = -1
  else
    granted = math.min(amount, tight.room)
    if granted < min_amount then granted = -1 end
  end
end

-- Every budgeted scope's room once `held` more sits on it, as {scope, room, ...}.
local function rooms_after(held)
  local out = {}
  for _, l in ipairs(lines) do
    out[#out + 1] = l.scope
    out[#out + 1] = math.max(l.room - held, 0)
  end
  return out
end

if granted < 0 then
  return {"deny", id, tight.scope, math.max(tight.room, 0), rooms_after(0)}
end

local decision = "allow"
if granted < amount then decision = "allow_with_caps" end
local rooms = rooms_after(granted)
if dry then
  if tight then return {"dry", id, decision, granted, tight.scope, math.max(tight.room - granted, 0), 0, 1, rooms} end
  return {"dry", id, decision, granted, "", 0, 0, 0, rooms}
end

local stored_lines, stored_rooms = {}, {}
for i, l in ipairs(lines) do
  local wk = base .. "w|" .. l.line
  redis.call("HINCRBY", wk, "r", int(granted))
  redis.call("HSET", wk, "l", int(l.limit), "p", l.period)
  redis.call("SADD", base .. "idx", l.line)
  touch_run(wk, l.scope, run_retention)
  stored_lines[#stored_lines + 1] = l.line
  stored_rooms[i] = int(rooms[2 * i])
end
local expires = now + ttl
local rk = base .. "r|" .. id
redis.call("HSET", rk, "st", "active", "dec", decision, "g", int(granted), "exp", int(expires),
  "lines", table.concat(stored_lines, "\n"), "rm", table.concat(stored_rooms, " "), "idem", idem,
  "fg", forget)
local ts, tr = "", 0
if tight then
  ts, tr = tight.scope, math.max(tight.room - granted, 0)
  redis.call("HSET", rk, "ts", ts, "tr", int(tr))
end
redis.call("ZADD", base .. "exp", int(expires), id)
if idem ~= "" then redis.call("SET", base .. "i|" .. idem, id) end
local has_tight = 0
if tight then has_tight = 1 end
return {"new", id, decision, granted, ts, tr, expires, has_tight, rooms}
