-- put_agent: ARGV = base, id, parent, then field/value pairs of the record.
-- Returns 1, or 0 when the id is taken.
local base, id, parent = ARGV[1], ARGV[2], ARGV[3]
local k = base .. "g|" .. id
if redis.call("EXISTS", k) == 1 then return 0 end
redis.call("HSET", k, unpack(ARGV, 4))
redis.call("SADD", base .. "gc|" .. parent, id)
redis.call("SADD", base .. "gall", id)
return 1
