-- trust_record: ARGV = base, agent, penalty added, success (1|0), half_life_ms, recovery,
-- now_ms, negligible. Applies the formula of trust.rs in the same order:
--   P(t) = P(t0) * 0.5^(max(t - t0, 0) / half_life);  P' = (P(t) + added) * (1 - recovery if success)
-- Returns P' as "%.17g" (a Lua number would reach the caller truncated to an integer).
local base, agent = ARGV[1], ARGV[2]
local added, success = tonumber(ARGV[3]), ARGV[4] == "1"
local half_life, recovery, now, negligible =
  tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8])
local tk = base .. "t|" .. agent
local h = redis.call("HMGET", tk, "p", "t")
local p0, t0 = tonumber(h[1] or "0"), tonumber(h[2] or ARGV[7])
local p = p0 * 0.5 ^ (math.max(now - t0, 0) / half_life) + added
if success then p = p * (1 - recovery) end
if p <= negligible then
  redis.call("DEL", tk)
  redis.call("SREM", base .. "all", agent)
  return string.format("%.17g", p)
end
redis.call("HSET", tk, "p", string.format("%.17g", p), "t", ARGV[7])
-- Gone once time alone has decayed it below `negligible`.
local forget = math.ceil(math.log(p / negligible) / math.log(2) * half_life)
redis.call("PEXPIRE", tk, string.format("%.0f", math.max(forget, 1)))
redis.call("SADD", base .. "all", agent)
return string.format("%.17g", p)
