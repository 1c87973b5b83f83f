-- cycles put: KEYS[1] = the record hash, KEYS[2] = the agent's list (zset, all scores 0,
-- members "<created_ms, 16 digits>|<id>", so text order is time order).
-- ARGV = member, retention_ms, "(<padded oldest created_ms kept>", then the
-- record's field/value pairs. Keeps the record unless one exists; returns the existing
-- record's HGETALL, or an empty array when this one was stored.
local existing = redis.call("HGETALL", KEYS[1])
if #existing > 0 then return existing end
redis.call("HSET", KEYS[1], unpack(ARGV, 4))
redis.call("PEXPIRE", KEYS[1], ARGV[2])
redis.call("ZADD", KEYS[2], 0, ARGV[1])
-- Entries older than the retention leave the list (their records expire on their own).
redis.call("ZREMRANGEBYLEX", KEYS[2], "-", ARGV[3])
redis.call("PEXPIRE", KEYS[2], ARGV[2])
return {}
