-- Finish the in-flight turn atomically: record the outcome, clear in-flight, move the upstream checkpoint,
-- publish the terminal event, and put it in the conversation's outbox for the global replies stream (which
-- lives in another cluster slot, so worker/replies.py relays it). Record + publish + ack in one step means a
-- crash can never publish twice.
-- KEYS[1] lease   KEYS[2] inflight   KEYS[3] turn hash   KEYS[4] state   KEYS[5] seq   KEYS[6] events
-- KEYS[7] outbox
-- ARGV[1] token   ARGV[2] turn id   ARGV[3] event json (no seq)   ARGV[4] stream maxlen   ARGV[5] retention s
-- ARGV[6] last upstream item id ('' keeps it)   ARGV[7..] turn field/value pairs
-- Returns the event's seq, -1 when fenced out, -2 when the turn is not in flight.
if not owns(KEYS[1], ARGV[1]) then
  return -1
end
if redis.call('GET', KEYS[2]) ~= ARGV[2] then
  return -2
end
redis.call('HSET', KEYS[3], unpack(ARGV, 7))
redis.call('HDEL', KEYS[3], 'lease_token')
redis.call('EXPIRE', KEYS[3], ARGV[5])
redis.call('DEL', KEYS[2])
if ARGV[6] ~= '' then
  redis.call('HSET', KEYS[4], 'last_item_id', ARGV[6])
end
local seq, payload = emit(KEYS[5], KEYS[6], ARGV[3], ARGV[4], ARGV[5])
redis.call('RPUSH', KEYS[7], payload)
redis.call('EXPIRE', KEYS[7], ARGV[5])
return seq
