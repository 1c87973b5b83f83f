-- cycles list: KEYS[1] = the agent's list. ARGV = base (the tenant's key prefix, whose
-- hash tag every record key shares), "(<cursor>" or "+", limit, "(<padded oldest
-- created_ms kept>".
-- Returns up to limit + 1 records' HGETALL, newest first; list entries whose record is
-- gone (expired) are dropped on the way.
redis.call("ZREMRANGEBYLEX", KEYS[1], "-", ARGV[4])
local want = tonumber(ARGV[3]) + 1
local out = {}
local from = ARGV[2]
while #out < want do
  local members = redis.call("ZREVRANGEBYLEX", KEYS[1], from, "-", "LIMIT", 0, want - #out)
  if #members == 0 then break end
  for _, m in ipairs(members) do
    local sep = string.find(m, "|", 1, true)
    local h = redis.call("HGETALL", ARGV[1] .. "cy|" .. string.sub(m, sep + 1))
    if #h > 0 then
      out[#out + 1] = h
    else
      redis.call("ZREM", KEYS[1], m)
    end
  end
  from = "(" .. members[#members]
end
return out
