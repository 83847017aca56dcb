-- Extend the lease if this owner still holds it.
-- KEYS[1] lease   ARGV[1] token   ARGV[2] lease ttl ms
-- Returns 1 if extended, 0 if the lease was lost.
if owns(KEYS[1], ARGV[1]) then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
