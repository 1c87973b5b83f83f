-- revoke_key: ARGV = base, id, now_ms. Revokes the key and its delegates (breadth first;
-- `seen` stops on a parent cycle). Returns {0} when unknown, else {1, {ids newly revoked}}.
local base, id, now = ARGV[1], ARGV[2], ARGV[3]
if redis.call("EXISTS", base .. "k|" .. id) == 0 then return {0} end
local queue, seen, out = {id}, {[id] = true}, {}
local i = 1
while i <= #queue do
  local cur = queue[i]
  i = i + 1
  local k = base .. "k|" .. cur
  if redis.call("EXISTS", k) == 1 and redis.call("HEXISTS", k, "r") == 0 then
    redis.call("HSET", k, "r", now)
    out[#out + 1] = cur
  end
  for _, child in ipairs(redis.call("SMEMBERS", base .. "c|" .. cur)) do
    if not seen[child] then
      seen[child] = true
      queue[#queue + 1] = child
    end
  end
end
table.sort(out)
return {1, out}
