-- Change fields of a conversation's record, only while it exists (an update racing a delete must not leave a
-- half record behind).
-- KEYS[1] conversation hash   ARGV field/value pairs; an empty value deletes the field
-- Returns 1 updated, 0 no such conversation.
if redis.call('EXISTS', KEYS[1]) == 0 then
  return 0
end
for i = 1, #ARGV, 2 do
  if ARGV[i + 1] == '' then
    redis.call('HDEL', KEYS[1], ARGV[i])
  else
    redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
  end
end
return 1
