-- Put a failed (dead-lettered) turn back at the tail of its conversation, as a fresh attempt.
-- KEYS[1] turn hash   KEYS[2] inbox   KEYS[3] lease   KEYS[4] state
-- ARGV[1] turn id   ARGV[2] now ms
-- Returns {1, need_hint} requeued, {0} the turn is not failed, {-1} unknown turn.
local status = redis.call('HGET', KEYS[1], 'status')
if not status then
  return {-1}
end
if status ~= 'failed' then
  return {0}
end
redis.call('HSET', KEYS[1], 'status', 'queued', 'attempts', 0)
redis.call('HDEL', KEYS[1], 'error', 'completed_at', 'started_at', 'response_id', 'output_text', 'usage')
redis.call('RPUSH', KEYS[2], ARGV[1])
local need_hint = 0
if redis.call('EXISTS', KEYS[3]) == 0 and redis.call('HGET', KEYS[4], 'ready') ~= '1' then
  redis.call('HSET', KEYS[4], 'ready', '1', 'hint_at', ARGV[2])
  need_hint = 1
end
return {1, need_hint}
