-- Cancel a turn that is still queued.
-- KEYS[1] turn hash   KEYS[2] inbox   KEYS[3] seq   KEYS[4] events
-- ARGV[1] turn id   ARGV[2] now (s)   ARGV[3] event json (no seq)   ARGV[4] stream maxlen   ARGV[5] retention s
-- Returns 1 cancelled, 0 not queued any more, -1 unknown turn.
local status = redis.call('HGET', KEYS[1], 'status')
if not status then
  return -1
end
if status ~= 'queued' then
  return 0
end
redis.call('HSET', KEYS[1], 'status', 'cancelled', 'completed_at', ARGV[2])
redis.call('LREM', KEYS[2], 1, ARGV[1])
emit(KEYS[3], KEYS[4], ARGV[3], ARGV[4], ARGV[5])
return 1
