-- Publish a non-terminal event (turn.started, response.delta) for the current owner only.
-- KEYS[1] lease   KEYS[2] seq   KEYS[3] events stream/channel
-- ARGV[1] token   ARGV[2] event json (no seq)   ARGV[3] stream maxlen   ARGV[4] retention s
-- Returns the event's seq, or -1 when fenced out.
if not owns(KEYS[1], ARGV[1]) then
  return -1
end
local seq = emit(KEYS[2], KEYS[3], ARGV[2], ARGV[3], ARGV[4])
return seq
