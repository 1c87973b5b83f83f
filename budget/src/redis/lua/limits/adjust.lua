-- adjust: ARGV = base, key, window_ms, granularity_ms, current bucket, lease_id, delta, now_ms.
-- Adds delta to the bucket the lease counted in (never below 0). Returns 1, or 0 when the
-- acquisition is unknown, past its ttl, or its bucket has left the window.
local base, key, wms, gran, cur = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4]), tonumber(ARGV[5])
local lease, delta, now = ARGV[6], tonumber(ARGV[7]), tonumber(ARGV[8])
local v = redis.call("HGET", base .. "a|" .. lease, key .. "|" .. wms)
if not v then return 0 end
local b, exp = string.match(v, "^(%-?%d+) (%-?%d+)$")
if tonumber(exp) <= now or tonumber(b) <= cur - 60 then return 0 end
local wk = base .. "w|" .. key .. "|" .. wms
local used = math.max(tonumber(redis.call("HGET", wk, b) or "0") + delta, 0)
redis.call("HSET", wk, b, string.format("%.0f", used))
redis.call("PEXPIRE", wk, string.format("%.0f", tonumber(wms) + gran))
return 1
