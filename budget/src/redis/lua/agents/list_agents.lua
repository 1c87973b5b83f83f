-- list_agents: ARGV = base, parent or "" for all. Returns every matching record's HGETALL.
local set = ARGV[1] .. "gall"
if ARGV[2] ~= "" then set = ARGV[1] .. "gc|" .. ARGV[2] end
local out = {}
for _, id in ipairs(redis.call("SMEMBERS", set)) do
  local h = redis.call("HGETALL", ARGV[1] .. "g|" .. id)
  if #h > 0 then out[#out + 1] = h end
end
return out
