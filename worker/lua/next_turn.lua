-- Start the next turn under the lease: the in-flight one if a previous owner died with it, else the inbox head
-- (skipping cancelled turns). Counts the attempt on the turn itself, not on the Celery message, publishes
-- turn.started, and returns the turn's record so the caller needs no second round trip.
-- KEYS[1] lease   KEYS[2] inflight   KEYS[3] inbox   KEYS[4] seq   KEYS[5] events
-- ARGV[1] token   ARGV[2] turn key prefix   ARGV[3] now (s, float)   ARGV[4] conversation id
-- ARGV[5] stream maxlen   ARGV[6] retention s
-- Returns {-1} fenced out, {0} nothing to do, or {1, turn id, attempts, resumed, field, value, ...}.
if not owns(KEYS[1], ARGV[1]) then
  return {-1}
end
local turn_id = redis.call('GET', KEYS[2])
local resumed = 1
while not turn_id do
  resumed = 0
  turn_id = redis.call('LPOP', KEYS[3])
  if not turn_id then
    return {0}
  end
  -- Turn keys share this conversation's hash tag, so building them here stays in one cluster slot.
  if redis.call('HGET', ARGV[2] .. turn_id, 'status') ~= 'queued' then
    turn_id = nil
  end
end
local turn_key = ARGV[2] .. turn_id
redis.call('SET', KEYS[2], turn_id)
local attempts = redis.call('HINCRBY', turn_key, 'attempts', 1)
redis.call('HSET', turn_key, 'status', 'running', 'lease_token', ARGV[1])
redis.call('HSETNX', turn_key, 'started_at', ARGV[3])
local event = cjson.encode({id = turn_id .. '.started.' .. attempts, type = 'turn.started',
  conversation_id = ARGV[4], turn_id = turn_id, created_at = tonumber(ARGV[3]), attempt = attempts})
emit(KEYS[4], KEYS[5], event, ARGV[5], ARGV[6])
local reply = {1, turn_id, attempts, resumed}
for _, v in ipairs(redis.call('HGETALL', turn_key)) do
  reply[#reply + 1] = v
end
return reply
