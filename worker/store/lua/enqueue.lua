-- Accept a turn: dedupe, record, append to the inbox, publish turn.queued, and say whether a wake-up is needed.
-- KEYS[1] conversation hash   KEYS[2] inbox        KEYS[3] lease    KEYS[4] state
-- KEYS[5] inflight            KEYS[6] turn hash    KEYS[7] idempotency key (unused when ARGV[2] == '0')
-- KEYS[8] seq                 KEYS[9] events stream/channel
-- KEYS[10] turn index          KEYS[11] idempotency index   KEYS[12] outbox
-- ARGV[1] turn id  ARGV[2] has idempotency key (1/0)  ARGV[3] mailbox cap  ARGV[4] idempotency ttl s
-- ARGV[5] now ms   ARGV[6] retention s   ARGV[7] stream maxlen   ARGV[8] turn.queued event json (no seq)
-- ARGV[9] request fingerprint (what the turn asks for; an idempotency key reused for another request is refused)
-- ARGV[10] tenant of the caller (the conversation must belong to it)
-- ARGV[11] turn nonce   ARGV[12] idempotency key ('' without)   ARGV[13] turn index ttl s
-- ARGV[14] double-texting mode   ARGV[15] debounce due ms ('' when the turn does not wait)
-- ARGV[16] turn key prefix   ARGV[17] now (s, float)   ARGV[18] conversation id
-- ARGV[19..] turn hash field/value pairs
-- The policy's decision is worker/texting/decide.py `on_arrival`, applied here where the queue is seen
-- atomically: reject refuses when a turn waits or runs; latest supersedes the waiting turns; interrupt asks
-- the running one (or the one waiting for its bot's tool outputs) to stop.
-- The two indexes are what a delete finds the turns and idempotency keys by; each prunes, as it grows, the
-- members whose keys have expired, so a conversation that lives for months keeps only recent ones.
-- The idempotency key holds "<turn id> <fingerprint>" (a bare turn id from before fingerprints matches any).
-- Returns {status, turn id, position, need_hint, superseded}; status is ok | duplicate | reused | full |
-- missing | busy.
if redis.call('EXISTS', KEYS[1]) == 0 then
  return {'missing', '', 0, 0}
end
-- Records from before tenants have none: they belong to the default tenant.
if (redis.call('HGET', KEYS[1], 'tenant') or 'default') ~= ARGV[10] then
  return {'missing', '', 0, 0}
end
local busy = redis.call('EXISTS', KEYS[5])
if ARGV[2] == '1' then
  local stored = redis.call('GET', KEYS[7])
  if stored then
    local existing, fingerprint = string.match(stored, '^(%S+) ?(%S*)$')
    if fingerprint ~= '' and fingerprint ~= ARGV[9] then
      return {'reused', existing, 0, 0}
    end
    local index = redis.call('LPOS', KEYS[2], existing)
    local position = 0
    if index then position = index + 1 + busy end
    return {'duplicate', existing, position, 0}
  end
end
local queued = redis.call('LLEN', KEYS[2])
local mode = ARGV[14]
if mode == 'reject' and (queued > 0 or busy == 1) then
  return {'busy', '', queued + busy, 0}
end
if queued >= tonumber(ARGV[3]) then
  return {'full', '', queued, 0}
end
redis.call('HSET', KEYS[6], unpack(ARGV, 19))
redis.call('EXPIRE', KEYS[6], ARGV[6])
local now_ms = tonumber(ARGV[5])
add_to_index(KEYS[10], now_ms, ARGV[11], tonumber(ARGV[13]))
if ARGV[2] == '1' then
  redis.call('SET', KEYS[7], ARGV[1] .. ' ' .. ARGV[9], 'EX', ARGV[4])
  add_to_index(KEYS[11], now_ms, ARGV[12], tonumber(ARGV[4]))
end
emit(KEYS[8], KEYS[9], ARGV[8], ARGV[7], ARGV[6])
local superseded = 0
if mode == 'latest' then
  for _, waiting in ipairs(redis.call('LRANGE', KEYS[2], 0, -1)) do
    if redis.call('HGET', ARGV[16] .. waiting, 'status') == 'queued' then
      fold(ARGV[16] .. waiting, waiting, 'superseded', ARGV[1], ARGV[17], ARGV[18], KEYS[8], KEYS[9], KEYS[12],
           ARGV[7], ARGV[6])
      superseded = superseded + 1
    end
  end
  redis.call('DEL', KEYS[2])
end
local position = redis.call('RPUSH', KEYS[2], ARGV[1]) + busy
if mode == 'interrupt' and busy == 1 then
  local running = redis.call('GET', KEYS[5])
  local status = redis.call('HGET', ARGV[16] .. running, 'status')
  if status == 'running' or status == 'requires_action' then
    redis.call('HSET', ARGV[16] .. running, 'interrupt_by', ARGV[1])
  end
end
if ARGV[15] ~= '' then
  redis.call('HSETNX', KEYS[4], 'wait_since', ARGV[5])
  local due = tonumber(redis.call('HGET', KEYS[4], 'due_at') or '0')
  if tonumber(ARGV[15]) > due then
    redis.call('HSET', KEYS[4], 'due_at', ARGV[15])
  end
end
-- A wake-up is needed only if nobody owns the conversation and none is pending: an owner sees the new turn
-- before it releases (release.lua re-marks the conversation ready), so no wake-up is lost.
local need_hint = 0
if redis.call('EXISTS', KEYS[3]) == 0 and redis.call('HGET', KEYS[4], 'ready') ~= '1' then
  redis.call('HSET', KEYS[4], 'ready', '1', 'hint_at', ARGV[5])
  need_hint = 1
end
return {'ok', ARGV[1], position, need_hint, superseded}
