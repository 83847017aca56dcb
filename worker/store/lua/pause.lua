-- Stop a turn to wait for its bot's tool outputs (requires_action): the turn stays in flight, so the
-- conversation's later turns wait behind it, but the lease is given back, so no worker thread waits with it.
-- A claim before the outputs arrive (or the deadline passes) leaves it alone (start_next in _lib.lua).
-- KEYS[1] lease   KEYS[2] inflight   KEYS[3] turn hash   KEYS[4] seq   KEYS[5] events   KEYS[6] state
-- ARGV[1] token   ARGV[2] turn id   ARGV[3] required_action json   ARGV[4] deadline (s)   ARGV[5] event json
-- ARGV[6] stream maxlen   ARGV[7] retention s
-- Returns the event's seq, -1 when fenced out, or -2 (nothing done) when a newer turn asks it to stop: its
-- owner closes its calls instead (worker/texting/interrupt.py).
if not owns(KEYS[1], ARGV[1]) or redis.call('GET', KEYS[2]) ~= ARGV[2] then
  return -1
end
if redis.call('HEXISTS', KEYS[3], 'interrupt_by') == 1 then
  return -2
end
redis.call('HSET', KEYS[3], 'status', 'requires_action', 'required_action', ARGV[3], 'action_deadline', ARGV[4])
redis.call('HDEL', KEYS[3], 'lease_token')
local seq = emit(KEYS[4], KEYS[5], ARGV[5], ARGV[6], ARGV[7])
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[6], 'ready', '0')
return seq
