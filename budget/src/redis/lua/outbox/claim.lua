-- outbox claim: KEYS[1] = the due set; ARGV = base, now_ms, lease_ms, limit. Leases up to
-- `limit` due items (their score moves to now + lease); returns id, body, attempts for each.
local ids = redis.call("ZRANGEBYSCORE", KEYS[1], "-inf", ARGV[2], "LIMIT", 0, tonumber(ARGV[4]))
local out = {}
local until_ms = tonumber(ARGV[2]) + tonumber(ARGV[3])
for _, id in ipairs(ids) do
  local h = redis.call("HMGET", ARGV[1] .. "i|" .. id, "b", "n")
  if h[1] then
    redis.call("ZADD", KEYS[1], until_ms, id)
    out[#out + 1] = id
    out[#out + 1] = h[1]
    out[#out + 1] = h[2] or "0"
  else
    -- The item's hash is gone (it cannot be delivered): forget it.
    redis.call("ZREM", KEYS[1], id)
  end
end
return out
