-- Per-key rate limit, GCRA (generic cell rate algorithm): one request costs `interval`; a key may run up to
-- `burst` requests ahead of its steady rate. Stored is the theoretical arrival time (TAT) in microseconds,
-- with Redis's own clock, so every API process judges by the same time.
-- KEYS[1] the key's limiter   ARGV[1] interval us (1e6 / rate)   ARGV[2] burst (requests)
-- Returns {allowed (1/0), retry after ms (0 when allowed)}.
local now_s, now_us = unpack(redis.call('TIME'))
local now = tonumber(now_s) * 1000000 + tonumber(now_us)
local interval = tonumber(ARGV[1])
local tolerance = interval * (tonumber(ARGV[2]) - 1)
local tat = tonumber(redis.call('GET', KEYS[1])) or now
if tat < now then
  tat = now
end
local allow_at = tat - tolerance
if now < allow_at then
  return {0, math.ceil((allow_at - now) / 1000)}
end
local new_tat = tat + interval
redis.call('SET', KEYS[1], string.format('%d', new_tat), 'PX', math.ceil((new_tat - now) / 1000) + 1)
return {1, 0}
