-- Start the next turn under the lease (see start_next in _lib.lua).
-- KEYS[1] lease   KEYS[2] inflight   KEYS[3] inbox   KEYS[4] seq   KEYS[5] events   KEYS[6] state
-- KEYS[7] outbox
-- ARGV[1] token   ARGV[2] turn key prefix   ARGV[3] now (s, float)   ARGV[4] conversation id
-- ARGV[5] stream maxlen   ARGV[6] retention s
-- Returns {-1} fenced out, {0} nothing to do, {3, due ms} debounced, or
-- {1, turn id, attempts, resumed, field, value, ...}.
if not owns(KEYS[1], ARGV[1]) then
  return {-1}
end
return start_next(KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7], ARGV[1], ARGV[2], ARGV[3], ARGV[4],
                  ARGV[5], ARGV[6])
