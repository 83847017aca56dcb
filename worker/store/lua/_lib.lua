-- Shared helpers, prepended to every script by worker/store/scripts.py, after one line that sets
-- SHARDED_PUBSUB (true on Redis Cluster).

-- Append one event to a conversation: next seq, stream entry "<seq>-0" (the durable copy), then publish it.
-- `json` is the event object without "seq"; the seq is spliced in here so it is assigned atomically.
-- Returns the seq and the published payload.
local function emit(seq_key, events_key, json, maxlen, retention_s)
  local seq = redis.call('INCR', seq_key)
  local payload = string.sub(json, 1, -2) .. ',"seq":' .. seq .. '}'
  redis.call('XADD', events_key, 'MAXLEN', '~', maxlen, seq .. '-0', 'data', payload)
  redis.call('EXPIRE', events_key, retention_s)
  if SHARDED_PUBSUB then
    -- The channel has the keys' hash tag, so it is in this script's slot: its subscribers SSUBSCRIBE on
    -- the shard that owns the conversation, and no other node carries the message.
    redis.call('SPUBLISH', events_key, payload)
  else
    redis.call('PUBLISH', events_key, payload)
  end
  return seq, payload
end

-- Add `member` to a per-conversation index (sorted set by time, ms) that lives `ttl_s`, dropping the members
-- older than that: their keys have expired by now.
local function add_to_index(key, now_ms, member, ttl_s)
  redis.call('ZADD', key, now_ms, member)
  redis.call('ZREMRANGEBYSCORE', key, '-inf', string.format('(%d', now_ms - ttl_s * 1000))
  redis.call('EXPIRE', key, ttl_s)
end

local function owns(lease_key, token)
  return redis.call('GET', lease_key) == token
end

-- Start the next turn of a conversation whose lease the caller holds: the in-flight one if a previous owner
-- died with it (or handed it back), else the inbox head, skipping cancelled turns. Counts the attempt (and a
-- crash, when its owner died) on the turn, publishes turn.started, and returns
-- {1, turn id, attempts, resumed, field, value, ...} or {0}.
-- Turn keys are built from `prefix`, which carries the conversation's hash tag (one cluster slot).
local function start_next(inflight_key, inbox_key, seq_key, events_key, token, prefix, now, conv, maxlen,
                          retention_s)
  local turn_id = redis.call('GET', inflight_key)
  if turn_id then
    -- Waiting for its bot's tool outputs (pause.lua): the turn and those behind it wait, until the outputs
    -- queue it again or its deadline passes (then its owner closes the calls and fails it).
    local status, deadline = unpack(redis.call('HMGET', prefix .. turn_id, 'status', 'action_deadline'))
    if status == 'requires_action' and tonumber(now) < tonumber(deadline or '0') then
      return {0}
    end
  end
  local resumed = 1
  while not turn_id do
    resumed = 0
    turn_id = redis.call('LPOP', inbox_key)
    if not turn_id then
      return {0}
    end
    if redis.call('HGET', prefix .. turn_id, 'status') ~= 'queued' then
      turn_id = nil
    end
  end
  local turn_key = prefix .. turn_id
  -- Still 'running' when resumed: its owner died (or lost the lease) mid-turn. A hand-back sets it to
  -- 'queued' first, so a graceful shutdown is not counted as a crash.
  if resumed == 1 and redis.call('HGET', turn_key, 'status') == 'running' then
    redis.call('HINCRBY', turn_key, 'crashes', 1)
  end
  redis.call('SET', inflight_key, turn_id)
  local attempts = redis.call('HINCRBY', turn_key, 'attempts', 1)
  redis.call('HSET', turn_key, 'status', 'running', 'lease_token', token)
  redis.call('HSETNX', turn_key, 'started_at', now)
  local event = cjson.encode({id = turn_id .. '.started.' .. attempts, type = 'turn.started',
    conversation_id = conv, turn_id = turn_id, created_at = tonumber(now), attempt = attempts})
  emit(seq_key, events_key, event, maxlen, retention_s)
  local reply = {1, turn_id, attempts, resumed}
  for _, v in ipairs(redis.call('HGETALL', turn_key)) do
    reply[#reply + 1] = v
  end
  return reply
end
