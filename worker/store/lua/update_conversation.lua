-- Change fields of a conversation's record, only while it exists (an update racing a delete must not leave a
-- half record behind).
-- KEYS[1] conversation hash   ARGV field/value pairs
-- Returns 1 updated, 0 no such conversation.
if redis.call('EXISTS', KEYS[1]) == 0 then
  return 0
end
redis.call('HSET', KEYS[1], unpack(ARGV))
return 1
