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

-- End a turn that another one answers (double texting, worker/texting/decide.py): `status` is merged,
-- superseded or interrupted, `answered_by` that turn. Its terminal event goes out now, and to the outbox
-- like every terminal event (the global replies stream and the webhooks read it).
local function fold(turn_key, turn_id, status, answered_by, now, conv, seq_key, events_key, outbox_key, maxlen,
                    retention_s)
  redis.call('HSET', turn_key, 'status', status, 'answered_by', answered_by, 'completed_at', now)
  redis.call('HDEL', turn_key, 'lease_token', 'interrupt_by', 'interrupted')
  redis.call('EXPIRE', turn_key, retention_s)
  local event = {id = turn_id .. '.' .. status, type = 'turn.' .. status, conversation_id = conv,
    turn_id = turn_id, created_at = tonumber(now), answered_by = answered_by}
  if status == 'merged' then
    event.into = answered_by
  end
  local metadata = redis.call('HGET', turn_key, 'metadata')
  if metadata and metadata ~= '{}' then
    event.metadata = cjson.decode(metadata)
  end
  local _, payload = emit(seq_key, events_key, cjson.encode(event), maxlen, retention_s)
  redis.call('RPUSH', outbox_key, payload)
  redis.call('EXPIRE', outbox_key, retention_s)
end

-- The policies whose waiting turns go upstream together (worker/texting/decide.py `plan`).
local MERGING = {merge = true, interrupt = true}

-- After popping `head` from the inbox: take the queued turns right behind it that merge too, and make the
-- newest of them the one that answers (decide.py `plan`). The others end merged (or interrupted, for a turn
-- an interrupt put back at the head); the answer gets every input in arrival order (`batch_inputs`) and
-- the list of turns it answers. Returns the answering turn's id.
local function batch(head, inbox_key, prefix, now, conv, seq_key, events_key, outbox_key, maxlen, retention_s)
  local mode, flagged = unpack(redis.call('HMGET', prefix .. head, 'double_texting', 'interrupted'))
  if not MERGING[mode or ''] and flagged ~= '1' then
    return head
  end
  local members = {head}
  while true do
    local next_id = redis.call('LINDEX', inbox_key, 0)
    if not next_id then
      break
    end
    local status, next_mode = unpack(redis.call('HMGET', prefix .. next_id, 'status', 'double_texting'))
    if status == 'queued' and not MERGING[next_mode or ''] then
      break
    end
    redis.call('LPOP', inbox_key)
    if status == 'queued' then  -- a cancelled one is only dropped, as start_next does
      members[#members + 1] = next_id
    end
  end
  local answer = members[#members]
  if #members == 1 then
    redis.call('HDEL', prefix .. answer, 'interrupted')
    return answer
  end
  local inputs, others = {}, {}
  for i, id in ipairs(members) do
    local batched, input = unpack(redis.call('HMGET', prefix .. id, 'batch_inputs', 'input'))
    -- Stored JSON, spliced as text: a turn put back by an interrupt brings all the inputs it answered.
    inputs[#inputs + 1] = batched and string.sub(batched, 2, -2) or input
    if i < #members then
      others[#others + 1] = cjson.encode(id)
      local flag = redis.call('HGET', prefix .. id, 'interrupted')
      fold(prefix .. id, id, flag == '1' and 'interrupted' or 'merged', answer, now, conv, seq_key, events_key,
           outbox_key, maxlen, retention_s)
    end
  end
  redis.call('HSET', prefix .. answer, 'batch_inputs', '[' .. table.concat(inputs, ',') .. ']',
             'answers', '[' .. table.concat(others, ',') .. ']')
  return answer
end

-- Start the next turn of a conversation whose lease the caller holds: the in-flight one if a previous owner
-- died with it (or handed it back), else the inbox head, skipping cancelled turns. Counts the attempt (and a
-- crash, when its owner died) on the turn, publishes turn.started, and returns
-- {1, turn id, attempts, resumed, field, value, ...}, {0} (nothing to do) or {3, due ms} (debounced: the
-- waiting turns may start at that time).
-- Turn keys are built from `prefix`, which carries the conversation's hash tag (one cluster slot).
local function start_next(inflight_key, inbox_key, seq_key, events_key, state_key, outbox_key, token, prefix,
                          now, conv, maxlen, retention_s)
  local turn_id = redis.call('GET', inflight_key)
  if turn_id then
    -- Waiting for its bot's tool outputs (pause.lua): the turn and those behind it wait, until the outputs
    -- queue it again or its deadline passes (then its owner closes the calls and fails it), or a newer
    -- turn interrupts it (its owner then closes its calls).
    local status, deadline, interrupt_by = unpack(redis.call('HMGET', prefix .. turn_id, 'status',
                                                             'action_deadline', 'interrupt_by'))
    if status == 'requires_action' and tonumber(now) < tonumber(deadline or '0') and not interrupt_by then
      return {0}
    end
  end
  local resumed = 1
  if not turn_id then
    -- Debounced (enqueue.lua set when): not before then, and the caller wakes the conversation at that time.
    local due = tonumber(redis.call('HGET', state_key, 'due_at') or '0')
    if due > tonumber(now) * 1000 and redis.call('LLEN', inbox_key) > 0 then
      return {3, due}
    end
  end
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
  if resumed == 0 then
    turn_id = batch(turn_id, inbox_key, prefix, now, conv, seq_key, events_key, outbox_key, maxlen, retention_s)
    -- The next wait starts with the next message.
    redis.call('HDEL', state_key, 'due_at', 'wait_since')
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
