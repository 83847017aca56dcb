-- A bot's outputs for a turn that requires action: every call id must be one the turn asked for, and once all
-- are recorded the turn is queued again (at the head: it is still in flight) and a wake-up is asked for.
-- Posting the same outputs again changes nothing.
-- KEYS[1] turn hash   KEYS[2] tool results hash   KEYS[3] lease   KEYS[4] state
-- ARGV[1] now ms   ARGV[2] retention s   ARGV[3..] call id / output pairs
-- Returns {status, detail}: ok | unchanged | not_waiting | unknown_call (detail: the call id) |
-- missing_call (detail: a call id without an output), and need_wakeup as a third element for ok.
local status, action = unpack(redis.call('HMGET', KEYS[1], 'status', 'required_action'))
if not status then
  return {'not_found', ''}
end
local wanted = {}
if action then
  for _, call in ipairs(cjson.decode(action)['tool_calls']) do
    wanted[call['call_id']] = true
  end
end
local given = {}
for i = 3, #ARGV, 2 do
  if not wanted[ARGV[i]] then
    return {'unknown_call', ARGV[i]}
  end
  given[ARGV[i]] = true
end
for call_id, _ in pairs(wanted) do
  if not given[call_id] and redis.call('HEXISTS', KEYS[2], call_id) == 0 then
    return {'missing_call', call_id}
  end
end
if status ~= 'requires_action' then
  -- Already resumed (or ended): the same outputs posted again are a no-op.
  return {'unchanged', status}
end
for i = 3, #ARGV, 2 do
  redis.call('HSETNX', KEYS[2], ARGV[i], ARGV[i + 1])
end
redis.call('EXPIRE', KEYS[2], ARGV[2])
redis.call('HSET', KEYS[1], 'status', 'queued')
local need = 0
if redis.call('EXISTS', KEYS[3]) == 0 then
  redis.call('HSET', KEYS[4], 'ready', '1', 'hint_at', ARGV[1])
  need = 1
end
return {'ok', '', need}
