-- list_approvals: ARGV = base. Returns the HGETALL of every record, oldest first, and drops
-- index entries whose records have been forgotten.
local out = {}
for _, id in ipairs(redis.call("ZRANGE", ARGV[1] .. "all", 0, -1)) do
  local h = redis.call("HGETALL", ARGV[1] .. "a|" .. id)
  if #h == 0 then
    redis.call("ZREM", ARGV[1] .. "all", id)
  else
    out[#out + 1] = h
  end
end
return out
