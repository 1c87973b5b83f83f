-- list_keys: ARGV = base. Returns every record's HGETALL.
local out = {}
for _, id in ipairs(redis.call("SMEMBERS", ARGV[1] .. "all")) do
  out[#out + 1] = redis.call("HGETALL", ARGV[1] .. "k|" .. id)
end
return out
