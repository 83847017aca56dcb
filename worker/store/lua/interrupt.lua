-- Put an interrupted turn back at the head of its conversation, once its owner has stopped its response and
-- taken the conversation's items back to the checkpoint (worker/texting/interrupt.py): its input goes
-- upstream again with the turns that interrupted it, and it ends `interrupted` when that batch starts
-- (batch() in _lib.lua). Then the next turn starts, as after a finish.
-- KEYS[1] lease   KEYS[2] inflight   KEYS[3] turn hash   KEYS[4] inbox   KEYS[5] seq   KEYS[6] events
-- KEYS[7] state   KEYS[8] outbox   KEYS[9] the turn's tool results
-- ARGV[1] token   ARGV[2] turn id   ARGV[3] turn key prefix   ARGV[4] now (s, float)   ARGV[5] conversation id
-- ARGV[6] stream maxlen   ARGV[7] retention s
-- Returns {-1} fenced out, or what finish.lua returns after its record: {0, 2} nothing to start (lease given
-- back), {0, 3, due ms} debounced, {0, 1, turn id, attempts, resumed, field, value, ...}.
if not owns(KEYS[1], ARGV[1]) or redis.call('GET', KEYS[2]) ~= ARGV[2] then
  return {-1}
end
redis.call('HSET', KEYS[3], 'status', 'queued', 'interrupted', '1')
-- What its stopped attempt recorded was taken back upstream; the next request starts afresh.
redis.call('HDEL', KEYS[3], 'interrupt_by', 'lease_token', 'response_id', 'response_ids', 'tool_calls',
           'required_action', 'action_deadline', 'output_text')
redis.call('DEL', KEYS[9], KEYS[2])
redis.call('LPUSH', KEYS[4], ARGV[2])
local started = start_next(KEYS[2], KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8], ARGV[1], ARGV[3], ARGV[4],
                           ARGV[5], ARGV[6], ARGV[7])
if started[1] == 3 then
  redis.call('DEL', KEYS[1])
  redis.call('HSET', KEYS[7], 'ready', '1', 'hint_at', math.floor(tonumber(ARGV[4]) * 1000))
  return {0, 3, started[2]}
end
if started[1] == 0 then
  redis.call('DEL', KEYS[1])
  return {0, 2}
end
return {0, unpack(started)}
