-- key_by_hash: ARGV = base, sha256_hex. Returns the record's HGETALL, empty when unknown.
local id = redis.call("GET", ARGV[1] .. "h|" .. ARGV[2])
if not id then return {} end
return redis.call("HGETALL", ARGV[1] .. "k|" .. id)
