-- Delete a conversation: cancel every queued turn (each gets its turn.cancelled event, so a bot waiting on it
-- hears why), then drop the record and the inbox in the same step, so no turn can be accepted in between.
-- A running turn is left to its owner (it fails once the upstream conversation is gone). Like every terminal
-- event, each turn.cancelled goes to the outbox too (the caller relays it to the replies stream), and the
-- conversation's webhook is kept beside it for the retention, so those cancellations still reach it.
-- KEYS[1] conversation hash   KEYS[2] inbox   KEYS[3] seq   KEYS[4] events   KEYS[5] outbox
-- KEYS[6] deleted (the webhook of a deleted conversation)
-- ARGV[1] turn key prefix   ARGV[2] now (s)   ARGV[3] conversation id   ARGV[4] stream maxlen
-- ARGV[5] retention s
-- Returns the number of turns cancelled, or -1 when the conversation does not exist.
if redis.call('EXISTS', KEYS[1]) == 0 then
  return -1
end
local cancelled = 0
for _, turn_id in ipairs(redis.call('LRANGE', KEYS[2], 0, -1)) do
  local turn_key = ARGV[1] .. turn_id
  local status, metadata = unpack(redis.call('HMGET', turn_key, 'status', 'metadata'))
  if status == 'queued' then
    redis.call('HSET', turn_key, 'status', 'cancelled', 'completed_at', ARGV[2])
    local event = {id = turn_id .. '.cancelled', type = 'turn.cancelled', conversation_id = ARGV[3],
                   turn_id = turn_id, created_at = tonumber(ARGV[2]), reason = 'conversation_deleted'}
    if metadata then
      event.metadata = cjson.decode(metadata)
    end
    local _, payload = emit(KEYS[3], KEYS[4], cjson.encode(event), ARGV[4], ARGV[5])
    redis.call('RPUSH', KEYS[5], payload)
    redis.call('EXPIRE', KEYS[5], ARGV[5])
    cancelled = cancelled + 1
  end
end
local url, events = unpack(redis.call('HMGET', KEYS[1], 'webhook_url', 'webhook_events'))
if url then
  redis.call('HSET', KEYS[6], 'webhook_url', url)
  if events then
    redis.call('HSET', KEYS[6], 'webhook_events', events)
  end
  redis.call('EXPIRE', KEYS[6], ARGV[5])
end
redis.call('DEL', KEYS[1], KEYS[2])
return cancelled
