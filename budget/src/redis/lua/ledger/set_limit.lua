-- set_limit: ARGV = base, scope, limit|"" (clear), period.
local base, scope, limit, period = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
if limit == "" then
  redis.call("DEL", base .. "o|" .. scope)
  redis.call("SREM", base .. "ovr", scope)
else
  redis.call("HSET", base .. "o|" .. scope, "l", limit, "p", period)
  redis.call("SADD", base .. "ovr", scope)
end
return 1
