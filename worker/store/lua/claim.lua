-- Take a conversation's lease with a new fencing token and start its next turn in the same round trip.
-- KEYS[1] lease   KEYS[2] fence counter   KEYS[3] state   KEYS[4] inflight   KEYS[5] inbox   KEYS[6] seq
-- KEYS[7] events   KEYS[8] conversation hash   KEYS[9] outbox
-- ARGV[1] lease ttl ms   ARGV[2] turn key prefix   ARGV[3] now (s, float)   ARGV[4] conversation id
-- ARGV[5] stream maxlen   ARGV[6] retention s
-- Returns {0} when another owner holds the lease, {1, token} when there was nothing to do (the lease is
-- already given back), {3, token, due ms} when its turns are debounced until then (no lease; the caller
-- sends a wake-up for that time, and ready stays set so enqueues do not send more meanwhile), or
-- {2, token, turn id, attempts, resumed, field, value, ...}.
-- A deleted conversation is never claimed again ({0}, writing nothing): a wake-up that arrives after the delete
-- must not bring back its fence, state or lease, and with no new lease its old owner stays fenced out.
if redis.call('EXISTS', KEYS[1]) == 1 or redis.call('EXISTS', KEYS[8]) == 0 then
  return {0}
end
local token = tostring(redis.call('INCR', KEYS[2]))
redis.call('HSET', KEYS[3], 'ready', '0')
local started = start_next(KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[3], KEYS[9], token, ARGV[2], ARGV[3],
                           ARGV[4], ARGV[5], ARGV[6])
if started[1] == 3 then
  redis.call('HSET', KEYS[3], 'ready', '1', 'hint_at', math.floor(tonumber(ARGV[3]) * 1000))
  return {3, token, started[2]}
end
if started[1] == 0 then
  -- Nothing queued: never take the lease at all (an enqueue after this script sees no owner and wakes us).
  return {1, token}
end
redis.call('SET', KEYS[1], token, 'PX', ARGV[1])
started[1] = token
return {2, unpack(started)}
