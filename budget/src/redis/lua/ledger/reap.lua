-- reap: ARGV = base, now_ms, limit, retention_ms. Returns how many holds were given back.
return reap(ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4]))
