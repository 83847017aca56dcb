-- Shared helpers, prepended to every script by worker/scripts.py.

-- Append one event to a conversation: next seq, stream entry "<seq>-0" (the durable copy), then PUBLISH.
-- `json` is the event object without "seq"; the seq is spliced in here so it is assigned atomically.
-- Returns the seq and the published payload.
local function emit(seq_key, events_key, json, maxlen, retention_s)
  local seq = redis.call('INCR', seq_key)
  local payload = string.sub(json, 1, -2) .. ',"seq":' .. seq .. '}'
  redis.call('XADD', events_key, 'MAXLEN', '~', maxlen, seq .. '-0', 'data', payload)
  redis.call('EXPIRE', events_key, retention_s)
  redis.call('PUBLISH', events_key, payload)
  return seq, payload
end

local function owns(lease_key, token)
  return redis.call('GET', lease_key) == token
end
