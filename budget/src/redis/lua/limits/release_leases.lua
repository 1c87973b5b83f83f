-- release_leases: ARGV = base, lease_id, then the lease keys. Returns how many were held.
local n = 0
for i = 3, #ARGV do
  n = n + redis.call("ZREM", ARGV[1] .. "l|" .. ARGV[i], ARGV[2])
end
return n
