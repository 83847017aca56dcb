-- Record server tool results (or a bot's outputs, for the worker's own closing of a call) for the current owner:
-- a result once recorded is the result, so a resumed turn never runs that call again.
-- KEYS[1] lease   KEYS[2] the turn's tool results hash (call id -> output)
-- ARGV[1] token   ARGV[2] retention s   ARGV[3..] call id / output pairs
-- Returns how many were new, or -1 when fenced out.
if not owns(KEYS[1], ARGV[1]) then
  return -1
end
local added = 0
for i = 3, #ARGV, 2 do
  added = added + redis.call('HSETNX', KEYS[2], ARGV[i], ARGV[i + 1])
end
redis.call('EXPIRE', KEYS[2], ARGV[2])
return added
