-- Give the in-flight turn back unfinished (graceful shutdown): it stays in flight, so the next owner resumes it
-- first, its status is queued again, and the interrupted attempt is not counted.
-- KEYS[1] lease   KEYS[2] inflight   KEYS[3] turn hash
-- ARGV[1] token   ARGV[2] turn id
-- Returns 1, or -1 when fenced out.
if not owns(KEYS[1], ARGV[1]) or redis.call('GET', KEYS[2]) ~= ARGV[2] then
  return -1
end
redis.call('HSET', KEYS[3], 'status', 'queued')
redis.call('HDEL', KEYS[3], 'lease_token')
redis.call('HINCRBY', KEYS[3], 'attempts', -1)
return 1
