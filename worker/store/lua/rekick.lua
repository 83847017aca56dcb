-- Reaper: re-mark an unowned conversation that has work as ready, when its wake-up is missing or stale
-- (a lost Celery message, a worker that died holding the lease, a hint sent to a dead worker).
-- KEYS[1] lease   KEYS[2] inbox   KEYS[3] inflight   KEYS[4] state
-- ARGV[1] now ms   ARGV[2] hint retry ms
-- Returns 1 when a wake-up must be sent, 0 when busy or idle, 2 when idle (no work, no owner).
if redis.call('EXISTS', KEYS[1]) == 1 then
  return 0
end
if redis.call('LLEN', KEYS[2]) == 0 and redis.call('EXISTS', KEYS[3]) == 0 then
  return 2
end
local state = redis.call('HMGET', KEYS[4], 'ready', 'hint_at')
if state[1] == '1' and tonumber(ARGV[1]) - tonumber(state[2] or '0') < tonumber(ARGV[2]) then
  return 0
end
redis.call('HSET', KEYS[4], 'ready', '1', 'hint_at', ARGV[1])
return 1
