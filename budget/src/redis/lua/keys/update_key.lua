-- update_key: ARGV = base, id, sha256_hex, then field/value pairs of the whole record.
-- Returns 1, 0 when there is no such key, -1 when the new hash belongs to another key.
local base, id, hex = ARGV[1], ARGV[2], ARGV[3]
local k = base .. "k|" .. id
if redis.call("EXISTS", k) == 0 then return 0 end
local holder = redis.call("GET", base .. "h|" .. hex)
if holder and holder ~= id then return -1 end
local old = redis.call("HMGET", k, "sha", "p")
if old[1] ~= hex then
  redis.call("DEL", base .. "h|" .. old[1])
  redis.call("SET", base .. "h|" .. hex, id)
end
if old[2] then redis.call("SREM", base .. "c|" .. old[2], id) end
redis.call("DEL", k)
redis.call("HSET", k, unpack(ARGV, 4))
local parent = redis.call("HGET", k, "p")
if parent then redis.call("SADD", base .. "c|" .. parent, id) end
return 1
