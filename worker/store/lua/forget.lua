-- Reaper: drop an idle conversation from the active index unless an enqueue touched it since it was read.
-- KEYS[1] active sorted set   ARGV[1] conversation id   ARGV[2] score (ms) the reaper read
-- Returns 1 when removed.
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if score and tonumber(score) <= tonumber(ARGV[2]) then
  return redis.call('ZREM', KEYS[1], ARGV[1])
end
return 0
