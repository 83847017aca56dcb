-- Cancel a turn that is still queued.
-- KEYS[1] turn hash   KEYS[2] inbox   KEYS[3] seq   KEYS[4] events   KEYS[5] outbox
-- ARGV[1] turn id   ARGV[2] now (s)   ARGV[3] event json (no seq)   ARGV[4] stream maxlen   ARGV[5] retention s
-- Returns 1 cancelled, 0 not queued any more, -1 unknown turn.
-- turn.cancelled is terminal like turn.completed, so it goes to the outbox too (for the global replies stream
-- and the webhooks that read it); the caller relays it, and the reaper relays it if the caller died first.
local status = redis.call('HGET', KEYS[1], 'status')
if not status then
  return -1
end
if status ~= 'queued' then
  return 0
end
redis.call('HSET', KEYS[1], 'status', 'cancelled', 'completed_at', ARGV[2])
redis.call('LREM', KEYS[2], 1, ARGV[1])
local _, payload = emit(KEYS[3], KEYS[4], ARGV[3], ARGV[4], ARGV[5])
redis.call('RPUSH', KEYS[5], payload)
redis.call('EXPIRE', KEYS[5], ARGV[5])
return 1
