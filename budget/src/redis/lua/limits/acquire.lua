-- acquire: ARGV = base, now_ms, lease_id, lease_ttl_ms, expiry_ms (now + ttl), nw, then six
-- per window (key, window_ms, granularity_ms, current bucket, limit, cost), nl, then two per
-- lease key (key, max). Every integer is computed by the caller (limits.rs), so this script
-- only sums and compares, exactly as `limits::judge` does.
-- Returns {"granted", states} or {"limited", key, retry_ms, states}, with one {used,
-- reset_ms} per window in request order. Counts nothing unless everything fits.
local BUCKETS = 60
local base, now, lease, ttl, expiry = ARGV[1], tonumber(ARGV[2]), ARGV[3], ARGV[4], ARGV[5]

local function leaves_at(b, gran) return (b + BUCKETS) * gran end

local wins, o = {}, 7
for i = 1, tonumber(ARGV[6]) do
  local w = {key = ARGV[o], wms = ARGV[o + 1], gran = tonumber(ARGV[o + 2]), cur_s = ARGV[o + 3],
    cur = tonumber(ARGV[o + 3]), limit = tonumber(ARGV[o + 4]), cost_s = ARGV[o + 5],
    cost = tonumber(ARGV[o + 5]), used = 0}
  o = o + 6
  w.k = base .. "w|" .. w.key .. "|" .. w.wms
  local flat = redis.call("HGETALL", w.k)
  local live, stale = {}, {}
  for j = 1, #flat, 2 do
    local b, u = tonumber(flat[j]), math.max(tonumber(flat[j + 1]), 0)
    if b <= w.cur - BUCKETS then
      stale[#stale + 1] = flat[j]
    else
      live[#live + 1] = {b, u}
      w.used = w.used + u
      if u > 0 and (w.newest == nil or b > w.newest) then w.newest = b end
    end
  end
  if #stale > 0 then redis.call("HDEL", w.k, unpack(stale)) end
  if w.used + w.cost > w.limit then
    -- When enough of the oldest buckets have left for this cost to fit (a whole window if
    -- it never can).
    w.retry = tonumber(w.wms)
    if w.cost <= w.limit then
      table.sort(live, function(a, b) return a[1] < b[1] end)
      local needed, freed = w.used + w.cost - w.limit, 0
      for _, bu in ipairs(live) do
        freed = freed + bu[2]
        if freed >= needed then
          w.retry = math.max(leaves_at(bu[1], w.gran) - now, 1000)
          break
        end
      end
    end
  end
  wins[i] = w
end

-- The binding limit: the longest wait, windows first, ties to the earlier (limits::binding).
local bkey, bretry = nil, nil
for _, w in ipairs(wins) do
  if w.retry and (bretry == nil or w.retry > bretry) then bkey, bretry = w.key, w.retry end
end
local leases = {}
for _ = 1, tonumber(ARGV[o]) do
  local key, max = ARGV[o + 1], tonumber(ARGV[o + 2])
  o = o + 2
  local lk = base .. "l|" .. key
  redis.call("ZREMRANGEBYSCORE", lk, "-inf", now)
  if redis.call("ZCARD", lk) >= max and (bretry == nil or 1000 > bretry) then
    bkey, bretry = key, 1000
  end
  leases[#leases + 1] = lk
end

local function states(counted)
  local out = {}
  for i, w in ipairs(wins) do
    local used, newest = w.used, w.newest
    if counted and w.cost > 0 then
      used = used + w.cost
      if newest == nil or w.cur > newest then newest = w.cur end
    end
    local reset = 0
    if used > 0 and newest then reset = math.max(leaves_at(newest, w.gran) - now, 0) end
    out[i] = {used, reset}
  end
  return out
end

if bkey then return {"limited", bkey, bretry, states(false)} end

local ak = base .. "a|" .. lease
for _, w in ipairs(wins) do
  if w.cost > 0 then
    redis.call("HINCRBY", w.k, w.cur_s, w.cost_s)
    -- The newest bucket leaves within window + granularity: idle counters vanish.
    redis.call("PEXPIRE", w.k, string.format("%.0f", tonumber(w.wms) + w.gran))
  end
  -- Where this acquisition counted, and until when `adjust` may find it.
  redis.call("HSET", ak, w.key .. "|" .. w.wms, w.cur_s .. " " .. expiry)
end
-- Never shorten it: an earlier acquire under the same lease id may need it longer.
if #wins > 0 and redis.call("PTTL", ak) < tonumber(ttl) then redis.call("PEXPIRE", ak, ttl) end
for _, lk in ipairs(leases) do
  redis.call("ZADD", lk, expiry, lease)
  local last = redis.call("ZRANGE", lk, -1, -1, "WITHSCORES")
  redis.call("PEXPIRE", lk, string.format("%.0f", tonumber(last[2]) - now + 1000))
end
return {"granted", states(true)}
