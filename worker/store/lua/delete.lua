-- Delete a conversation and everything parley keeps of it: its turns' records and events hold the users' and
-- the model's texts. First each turn still waiting or running gets its turn.cancelled event (reason
-- conversation_deleted), so a bot waiting on it hears why: the queued ones, and the in-flight one, whose owner
-- is fenced out as the lease goes (all its writes check the lease, and claim.lua issues none without the
-- record). Like every terminal event, each goes to the outbox, which the caller relays to the replies stream
-- (the reaper does if the caller died first; emptied, the list is gone), and the conversation's webhook is
-- kept beside it for the retention, so those cancellations still reach it. Then, in the same step (so no turn
-- can be accepted in between), the record, inbox, in-flight, lease, state, seq, fence, every turn record and
-- idempotency key (found by their indexes) and the indexes go. The event stream keeps only this delete's
-- cancellations, for `grace` seconds, so that the listeners following it read them: deleting a stream never
-- wakes a blocked XREAD. With nothing cancelled it goes at once.
-- KEYS[1] conversation hash   KEYS[2] inbox   KEYS[3] seq   KEYS[4] events   KEYS[5] outbox
-- KEYS[6] deleted (the webhook of a deleted conversation)   KEYS[7] inflight   KEYS[8] lease   KEYS[9] state
-- KEYS[10] fence   KEYS[11] turn index   KEYS[12] idempotency index
-- ARGV[1] turn key prefix   ARGV[2] now (s)   ARGV[3] conversation id   ARGV[4] stream maxlen
-- ARGV[5] retention s   ARGV[6] turn id head   ARGV[7] turn id tail (a turn id is head .. nonce .. tail)
-- ARGV[8] idempotency key prefix   ARGV[9] grace s
-- Returns {-1} when the conversation does not exist, else {queued turns cancelled, {turn id, ...}} with every
-- turn removed.
if redis.call('EXISTS', KEYS[1]) == 0 then
  return {-1}
end
local first_seq = nil

local function cancel(turn_id)
  local status, metadata = unpack(redis.call('HMGET', ARGV[1] .. turn_id, 'status', 'metadata'))
  if status ~= 'queued' and status ~= 'running' then
    return 0
  end
  local event = {id = turn_id .. '.cancelled', type = 'turn.cancelled', conversation_id = ARGV[3],
                 turn_id = turn_id, created_at = tonumber(ARGV[2]), reason = 'conversation_deleted'}
  if metadata then
    event.metadata = cjson.decode(metadata)
  end
  local seq, payload = emit(KEYS[3], KEYS[4], cjson.encode(event), ARGV[4], ARGV[5])
  first_seq = first_seq or seq
  redis.call('RPUSH', KEYS[5], payload)
  redis.call('EXPIRE', KEYS[5], ARGV[5])
  return 1
end

local turns, seen = {}, {}
local function remember(turn_id)
  if turn_id and not seen[turn_id] then
    seen[turn_id] = true
    turns[#turns + 1] = turn_id
  end
end

local inflight = redis.call('GET', KEYS[7])
if inflight then
  cancel(inflight)  -- not counted as queued: it left the queue when it started
  remember(inflight)
end
local cancelled = 0
for _, turn_id in ipairs(redis.call('LRANGE', KEYS[2], 0, -1)) do
  cancelled = cancelled + cancel(turn_id)  -- the inbox holds queued turns and cancelled ones
  remember(turn_id)
end
for _, nonce in ipairs(redis.call('ZRANGE', KEYS[11], 0, -1)) do
  remember(ARGV[6] .. nonce .. ARGV[7])
end

local url, events = unpack(redis.call('HMGET', KEYS[1], 'webhook_url', 'webhook_events'))
if url then
  redis.call('HSET', KEYS[6], 'webhook_url', url)
  if events then
    redis.call('HSET', KEYS[6], 'webhook_events', events)
  end
  redis.call('EXPIRE', KEYS[6], ARGV[5])
end

for _, turn_id in ipairs(turns) do
  redis.call('DEL', ARGV[1] .. turn_id, ARGV[1] .. turn_id .. ':tools')
end
for _, key in ipairs(redis.call('ZRANGE', KEYS[12], 0, -1)) do
  redis.call('DEL', ARGV[8] .. key)
end
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[7], KEYS[8], KEYS[9], KEYS[10], KEYS[11], KEYS[12])
if first_seq then
  redis.call('XTRIM', KEYS[4], 'MINID', first_seq .. '-0')
  redis.call('EXPIRE', KEYS[4], ARGV[9])
else
  redis.call('DEL', KEYS[4])
end
return {cancelled, turns}
