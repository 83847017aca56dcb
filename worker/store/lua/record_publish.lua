-- Set fields on the in-flight turn and publish non-terminal events after them, in one round trip, for the
-- current owner only: record.lua then publish.lua once per event (the tool loop's calls and their
-- tool.called events).
-- KEYS[1] lease   KEYS[2] turn hash   KEYS[3] seq   KEYS[4] events stream/channel
-- ARGV[1] token   ARGV[2] stream maxlen   ARGV[3] retention s   ARGV[4] n, the number of field/value
-- arguments that follow   ARGV[5..4+n] field/value pairs   ARGV[5+n..] event json (no seq), in order
-- Returns the last event's seq (0 without events), -1 when fenced out (nothing written), or -2 when a newer
-- turn asks the turn to stop: the fields are recorded (as record.lua does), no event is published.
if not owns(KEYS[1], ARGV[1]) then
  return -1
end
local n = tonumber(ARGV[4])
if n > 0 then
  redis.call('HSET', KEYS[2], unpack(ARGV, 5, 4 + n))
end
if redis.call('HEXISTS', KEYS[2], 'interrupt_by') == 1 then
  return -2
end
local seq = 0
for i = 5 + n, #ARGV do
  seq = emit(KEYS[3], KEYS[4], ARGV[i], ARGV[2], ARGV[3])
end
return seq
