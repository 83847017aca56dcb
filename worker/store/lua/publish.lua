-- Publish a non-terminal event (turn.started, response.delta) for the current owner only.
-- KEYS[1] lease   KEYS[2] seq   KEYS[3] events stream/channel   KEYS[4] the turn's hash
-- ARGV[1] token   ARGV[2] event json (no seq)   ARGV[3] stream maxlen   ARGV[4] retention s
-- Returns the event's seq, -1 when fenced out, or -2 (nothing published) when a newer turn asks the turn to
-- stop (double texting's interrupt): asked at every batch of deltas, it stops a stream within one.
if not owns(KEYS[1], ARGV[1]) then
  return -1
end
if redis.call('HEXISTS', KEYS[4], 'interrupt_by') == 1 then
  return -2
end
local seq = emit(KEYS[2], KEYS[3], ARGV[2], ARGV[3], ARGV[4])
return seq
