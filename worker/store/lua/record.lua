-- Set fields on the in-flight turn, only for the current owner (a stale owner cannot record).
-- KEYS[1] lease   KEYS[2] turn hash
-- ARGV[1] token   ARGV[2] attempts increment (0 or 1)   ARGV[3..] field/value pairs (may be none)
-- Returns the turn's attempt count, or -1 when fenced out.
if not owns(KEYS[1], ARGV[1]) then
  return -1
end
if #ARGV > 2 then
  redis.call('HSET', KEYS[2], unpack(ARGV, 3))
end
return redis.call('HINCRBY', KEYS[2], 'attempts', tonumber(ARGV[2]))
