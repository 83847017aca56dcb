-- Finish the in-flight turn atomically: record the outcome, clear in-flight, move the upstream checkpoint,
-- publish the terminal event, and put it in the conversation's outbox for the global replies stream (which
-- lives in another cluster slot, so worker/replies.py relays it). Record + publish + ack in one step means a
-- crash can never publish twice. With ARGV[7] = 1 it then starts the next turn in the same round trip, or,
-- when there is none, gives the lease back.
-- KEYS[1] lease   KEYS[2] inflight   KEYS[3] turn hash   KEYS[4] state   KEYS[5] seq   KEYS[6] events
-- KEYS[7] outbox   KEYS[8] inbox
-- ARGV[1] token   ARGV[2] turn id   ARGV[3] event json (no seq)   ARGV[4] stream maxlen   ARGV[5] retention s
-- ARGV[6] last upstream item id ('' keeps it)   ARGV[7] continue (1/0)   ARGV[8] turn key prefix
-- ARGV[9] now (s, float)   ARGV[10] conversation id   ARGV[11..] turn field/value pairs
-- Returns {-1} fenced out, {-2} turn not in flight, or {seq, 0} (lease still held), {seq, 2} (nothing left,
-- lease given back), {seq, 3, due ms} (the next turns are debounced until then: lease given back, the
-- caller wakes the conversation at that time) or {seq, 1, turn id, attempts, resumed, field, value, ...}
-- (next turn started).
if not owns(KEYS[1], ARGV[1]) then
  return {-1}
end
if redis.call('GET', KEYS[2]) ~= ARGV[2] then
  return {-2}
end
redis.call('HSET', KEYS[3], unpack(ARGV, 11))
redis.call('HDEL', KEYS[3], 'lease_token')
redis.call('EXPIRE', KEYS[3], ARGV[5])
redis.call('DEL', KEYS[2])
if ARGV[6] ~= '' then
  redis.call('HSET', KEYS[4], 'last_item_id', ARGV[6])
end
local seq, payload = emit(KEYS[5], KEYS[6], ARGV[3], ARGV[4], ARGV[5])
redis.call('RPUSH', KEYS[7], payload)
redis.call('EXPIRE', KEYS[7], ARGV[5])
if ARGV[7] ~= '1' then
  return {seq, 0}
end
local started = start_next(KEYS[2], KEYS[8], KEYS[5], KEYS[6], KEYS[4], KEYS[7], ARGV[1], ARGV[8], ARGV[9],
                           ARGV[10], ARGV[4], ARGV[5])
if started[1] == 3 then
  redis.call('DEL', KEYS[1])
  redis.call('HSET', KEYS[4], 'ready', '1', 'hint_at', math.floor(tonumber(ARGV[9]) * 1000))
  return {seq, 3, started[2]}
end
if started[1] == 0 then
  redis.call('DEL', KEYS[1])
  return {seq, 2}
end
return {seq, unpack(started)}
