-- Give up the lease; if work is left (turns that arrived meanwhile, or an in-flight turn handed back),
-- mark the conversation ready so the caller sends a wake-up: this is what makes a lost wake-up impossible.
-- KEYS[1] lease   KEYS[2] inbox   KEYS[3] inflight   KEYS[4] state
-- ARGV[1] token   ARGV[2] now ms
-- Returns 1 when a wake-up must be sent, 0 when idle, -1 when the lease was no longer ours.
if not owns(KEYS[1], ARGV[1]) then
  return -1
end
redis.call('DEL', KEYS[1])
if redis.call('LLEN', KEYS[2]) > 0 or redis.call('EXISTS', KEYS[3]) == 1 then
  redis.call('HSET', KEYS[4], 'ready', '1', 'hint_at', ARGV[2])
  return 1
end
return 0
