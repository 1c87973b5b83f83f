-- trust_all: ARGV = base. Returns {agent, penalty, updated_ms} for every stored penalty and
-- drops agents whose record has aged out or been reset.
local out = {}
for _, agent in ipairs(redis.call("SMEMBERS", ARGV[1] .. "all")) do
  local h = redis.call("HMGET", ARGV[1] .. "t|" .. agent, "p", "t")
  if h[1] then
    out[#out + 1] = {agent, h[1], h[2]}
  else
    redis.call("SREM", ARGV[1] .. "all", agent)
  end
end
return out
