-- put_key: ARGV = base, id, sha256_hex, then field/value pairs of the record.
-- Returns 1, or 0 when the id or the hash is taken.
local base, id, hex = ARGV[1], ARGV[2], ARGV[3]
local k = base .. "k|" .. id
if redis.call("EXISTS", k) == 1 or redis.call("EXISTS", base .. "h|" .. hex) == 1 then return 0 end
redis.call("HSET", k, unpack(ARGV, 4))
redis.call("SET", base .. "h|" .. hex, id)
redis.call("SADD", base .. "all", id)
local parent = redis.call("HGET", k, "p")
if parent then redis.call("SADD", base .. "c|" .. parent, id) end
return 1
