-- record: ARGV = base, now_ms, id, amount, retention_ms, run_retention_ms, n, then six
-- arguments per scope
-- (see `resolve`). Adds spend that had no reservation to every budgeted scope, without a
-- limit check. Returns 1, or 0 when the id is already known (nothing recorded).
local base, now, id = ARGV[1], tonumber(ARGV[2]), ARGV[3]
local amount, retention = tonumber(ARGV[4]), tonumber(ARGV[5])
local run_retention, n = tonumber(ARGV[6]), tonumber(ARGV[7])
local rk = base .. "r|" .. id
if redis.call("EXISTS", rk) == 1 then return 0 end
local stored_lines = {}
for i = 0, n - 1 do
  local l = resolve(base, 8 + i * 6)
  if l then
    local wk = base .. "w|" .. l.line
    redis.call("HINCRBY", wk, "s", int(amount))
    redis.call("HSET", wk, "l", int(l.limit), "p", l.period)
    redis.call("SADD", base .. "idx", l.line)
    touch_run(wk, l.scope, run_retention)
    stored_lines[#stored_lines + 1] = l.line
  end
end
redis.call("HSET", rk, "st", "committed", "dec", "recorded", "g", 0, "exp", int(now),
  "lines", table.concat(stored_lines, "\n"), "a", int(amount), "late", 0, "idem", "")
redis.call("PEXPIRE", rk, retention)
return 1
