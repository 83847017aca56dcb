-- Set fields on the in-flight turn, only for the current owner (a stale owner cannot record).
-- KEYS[1] lease   KEYS[2] turn hash
-- ARGV[1] token   ARGV[2] attempts increment (0 or 1)   ARGV[3..] field/value pairs (may be none)
-- Returns the turn's attempt count, -1 when fenced out, or -2 when a newer turn asks it to stop (double
-- texting's interrupt; the fields are recorded all the same, so the response id is known to its owner).
if not owns(KEYS[1], ARGV[1]) then
  return -1
end
if #ARGV > 2 then
  redis.call('HSET', KEYS[2], unpack(ARGV, 3))
end
local attempts = redis.call('HINCRBY', KEYS[2], 'attempts', tonumber(ARGV[2]))
if redis.call('HEXISTS', KEYS[2], 'interrupt_by') == 1 then
  return -2
end
return attempts
