-- The shared upstream health of one model (a circuit breaker): every worker process reports what its calls to
-- that model did since its last report, and reads the state back, so they all back off together.
-- KEYS[1] the model's health hash   KEYS[2] set of models with a health hash (for the API's metrics)
-- ARGV[1] model   ARGV[2] calls that succeeded since the caller's last report   ARGV[3] calls that failed
-- ARGV[4] window ms   ARGV[5] min calls   ARGV[6] failure ratio   ARGV[7] cool-down ms   ARGV[8] max cool-down ms
-- Returns {state, ms}: 0 closed; 1 half-open (the first window after a cool-down: callers only probe);
-- 2 open, ms until it half-opens.
-- Times come from Redis's clock, so processes on different hosts agree.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local window, min_calls = tonumber(ARGV[4]), tonumber(ARGV[5])
local f = redis.call('HMGET', KEYS[1], 'window_start', 'ok', 'failed', 'open_until', 'opens')
local window_start, ok, failed = tonumber(f[1]) or now, tonumber(f[2]) or 0, tonumber(f[3]) or 0
local open_until, opens = tonumber(f[4]) or 0, tonumber(f[5]) or 0
redis.call('SADD', KEYS[2], ARGV[1])
if now < open_until then
  -- Reports made while open are of calls started before it opened: they change nothing.
  return {2, open_until - now}
end
if now - window_start >= window then
  window_start, ok, failed = now, 0, 0
end
ok = ok + tonumber(ARGV[2])
failed = failed + tonumber(ARGV[3])
local half_open = opens > 0 and now < open_until + window
-- Half-open, few calls are made (each process probes), so fewer results decide.
local needed = min_calls
if half_open then
  needed = math.max(1, math.floor(min_calls / 4))
end
if ok + failed >= needed and failed >= tonumber(ARGV[6]) * (ok + failed) then
  opens = opens + 1
  local cooldown = math.min(tonumber(ARGV[7]) * 2 ^ (opens - 1), tonumber(ARGV[8]))
  open_until = now + cooldown
  redis.call('HSET', KEYS[1], 'window_start', open_until, 'ok', 0, 'failed', 0, 'open_until', open_until,
             'opens', opens)
  redis.call('PEXPIRE', KEYS[1], math.floor(cooldown + 10 * window))
  return {2, cooldown}
end
if not half_open and ok >= min_calls then
  opens = 0  -- a healthy full window: the next opening starts from the shortest cool-down again
end
redis.call('HSET', KEYS[1], 'window_start', window_start, 'ok', ok, 'failed', failed, 'open_until', open_until,
           'opens', opens)
redis.call('PEXPIRE', KEYS[1], 10 * window)
if half_open then
  return {1, 0}
end
return {0, 0}
