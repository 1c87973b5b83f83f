-- find_approval: ARGV = base, agent, tool, args_sha256_hex. Returns the HGETALL of the
-- newest record of the call (empty when none); the caller checks that it is live.
local id = redis.call("GET", ARGV[1] .. "x|" .. ARGV[2] .. "|" .. ARGV[3] .. "|" .. ARGV[4])
if not id then return {} end
return redis.call("HGETALL", ARGV[1] .. "a|" .. id)
