-- Compare-and-append one chained line to the audit stream.
-- KEYS[1] the stream, KEYS[2] the chain head, a hash: h = last line's hash, n = lines ever
-- appended (trimming does not lower it), c / ce = the instance holding the next turn and
-- until when (ms, Redis clock).
-- ARGV[1] the prev_hash the line was sealed on, ARGV[2] the line's hash, ARGV[3] the
-- line, ARGV[4] approximate MAXLEN ("0" keeps every line), ARGV[5] the caller's instance
-- id, ARGV[6] how long a turn is held (ms).
-- Returns {1, entry id, n} when appended; {0, current last hash, n} when another instance
-- extended the chain first (re-seal on that hash and retry); {2, last hash, n} when the
-- caller is up to date but another instance holds the turn (retry shortly).
--
-- Why turns: an instance that just appended learns the new head from its own reply and
-- sends its next line at once, while one that lost must first hear the head and re-seal;
-- without turns the winner keeps winning and the loser starves.
local head = redis.call("HMGET", KEYS[2], "h", "n", "c", "ce")
local last = head[1] or "0000000000000000000000000000000000000000000000000000000000000000"
local n = tonumber(head[2] or "0")
local t = redis.call("TIME")
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local holder = head[3]
if holder and tonumber(head[4] or "0") <= now then holder = false end
if last ~= ARGV[1] then
  if not holder then
    redis.call("HSET", KEYS[2], "c", ARGV[5], "ce", now + tonumber(ARGV[6]))
  end
  return {0, last, n}
end
if holder and holder ~= ARGV[5] then
  return {2, last, n}
end
local id
if ARGV[4] ~= "0" then
  id = redis.call("XADD", KEYS[1], "MAXLEN", "~", ARGV[4], "*", "line", ARGV[3])
else
  id = redis.call("XADD", KEYS[1], "*", "line", ARGV[3])
end
redis.call("HSET", KEYS[2], "h", ARGV[2], "n", n + 1)
if head[3] then redis.call("HDEL", KEYS[2], "c", "ce") end
return {1, id, n + 1}
