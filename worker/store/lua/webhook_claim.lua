-- Webhook dispatcher: take the deliveries that are due. Each one taken gets its score pushed out by a lease
-- instead of being removed, so two dispatchers never take the same delivery and one that dies holding it
-- loses nothing: the delivery simply comes due again when the lease runs out.
-- KEYS[1] retries sorted set   ARGV[1] now (s)   ARGV[2] lease (s)   ARGV[3] how many at most
-- Returns the delivery ids taken.
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[3]))
local until_s = tonumber(ARGV[1]) + tonumber(ARGV[2])
for _, id in ipairs(due) do
  redis.call('ZADD', KEYS[1], until_s, id)
end
return due
