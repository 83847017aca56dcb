-- Record server tool results (or a bot's outputs, for the worker's own closing of a call) for the current owner:
-- a result once recorded is the result, so a resumed turn never runs that call again. With an event (the
-- tool.completed of a result), it is published after the results, in the same round trip, as publish.lua would.
-- KEYS[1] lease   KEYS[2] the turn's tool results hash (call id -> output)   KEYS[3] seq
-- KEYS[4] events stream/channel   KEYS[5] the turn's hash
-- ARGV[1] token   ARGV[2] retention s   ARGV[3] stream maxlen   ARGV[4] event json (no seq), or '' for none
-- ARGV[5..] call id / output pairs
-- Returns how many were new, -1 when fenced out (nothing written), or -2 when an event was given and a newer
-- turn asks the turn to stop: the results are recorded, the event is not published.
if not owns(KEYS[1], ARGV[1]) then
  return -1
end
local added = 0
for i = 5, #ARGV, 2 do
  added = added + redis.call('HSETNX', KEYS[2], ARGV[i], ARGV[i + 1])
end
redis.call('EXPIRE', KEYS[2], ARGV[2])
if ARGV[4] ~= '' then
  if redis.call('HEXISTS', KEYS[5], 'interrupt_by') == 1 then
    return -2
  end
  emit(KEYS[3], KEYS[4], ARGV[4], ARGV[3], ARGV[2])
end
return added
