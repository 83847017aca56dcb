-- Put a failed (dead-lettered) turn back at the tail of its conversation, as a fresh attempt.
-- KEYS[1] turn hash   KEYS[2] inbox   KEYS[3] lease   KEYS[4] state   KEYS[5] conversation hash
-- KEYS[6] turn index
-- ARGV[1] turn id   ARGV[2] now ms   ARGV[3] turn nonce   ARGV[4] turn index ttl s
-- Returns {1, need_hint} requeued, {0} the turn is not failed, {-1} unknown turn (or deleted conversation:
-- its keys must not come back).
local status = redis.call('HGET', KEYS[1], 'status')
if not status or redis.call('EXISTS', KEYS[5]) == 0 then
  return {-1}
end
if status ~= 'failed' then
  return {0}
end
redis.call('HSET', KEYS[1], 'status', 'queued', 'attempts', 0)
redis.call('HDEL', KEYS[1], 'error', 'completed_at', 'started_at', 'response_id', 'output_text', 'usage')
-- It will be written again when it runs: the index must keep it as long as its record lives.
add_to_index(KEYS[6], tonumber(ARGV[2]), ARGV[3], tonumber(ARGV[4]))
redis.call('RPUSH', KEYS[2], ARGV[1])
local need_hint = 0
if redis.call('EXISTS', KEYS[3]) == 0 and redis.call('HGET', KEYS[4], 'ready') ~= '1' then
  redis.call('HSET', KEYS[4], 'ready', '1', 'hint_at', ARGV[2])
  need_hint = 1
end
return {1, need_hint}
