-- Take a conversation's lease with a new fencing token.
-- KEYS[1] lease   KEYS[2] fence counter   KEYS[3] state
-- ARGV[1] lease ttl ms
-- Returns the token, or 0 when another owner holds the lease.
if redis.call('EXISTS', KEYS[1]) == 1 then
  return 0
end
local token = redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[1], token, 'PX', ARGV[1])
redis.call('HSET', KEYS[3], 'ready', '0')
return token
