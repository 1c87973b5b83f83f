-- Compare-and-append one chained line to the audit stream.
-- KEYS[1] the stream, KEYS[2] the chain head: a hash with h = last line's hash and
-- n = lines ever appended (trimming does not lower it).
-- ARGV[1] the prev_hash the line was sealed on, ARGV[2] the line's hash, ARGV[3] the
-- line, ARGV[4] approximate MAXLEN ("0" keeps every line).
-- Returns {1, entry id, n} when appended, or {0, current last hash, n} when another
-- instance extended the chain first: the caller re-seals on that hash and retries.
local head = redis.call("HMGET", KEYS[2], "h", "n")
local last = head[1] or "0000000000000000000000000000000000000000000000000000000000000000"
local n = tonumber(head[2] or "0")
if last ~= ARGV[1] then
  return {0, last, n}
end
local id
if ARGV[4] ~= "0" then
  id = redis.call("XADD", KEYS[1], "MAXLEN", "~", ARGV[4], "*", "line", ARGV[3])
else
  id = redis.call("XADD", KEYS[1], "*", "line", ARGV[3])
end
redis.call("HSET", KEYS[2], "h", ARGV[2], "n", n + 1)
return {1, id, n + 1}
