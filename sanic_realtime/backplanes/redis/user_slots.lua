-- Cluster-wide max_connections_per_user: one user's connections on every worker.
-- KEYS[1] the user's hash ({prefix}:uconn:{user}): worker (node) -> its connections.
-- ARGV[1] the operation: 'claim', 'release' or 'set'; ARGV[2] this worker's node;
-- ARGV[3] claim: the limit; release: how many to give back; set: this worker's count;
-- ARGV[4] the hash's TTL (ms); ARGV[5..] workers known dead (their fields are deleted
-- and not counted).
-- claim: takes a slot if the live workers hold fewer than the limit; returns
--   {1, held after} or {0, held}. release / set: returns {1, held after}.
local key, op, node = KEYS[1], ARGV[1], ARGV[2]
local n, ttl = tonumber(ARGV[3]), tonumber(ARGV[4])
for i = 5, #ARGV do
  redis.call('HDEL', key, ARGV[i])
end
local held = 0
local fields = redis.call('HGETALL', key)
for i = 2, #fields, 2 do
  held = held + math.max(0, tonumber(fields[i]) or 0)
end
if op == 'claim' then
  if held >= n then
    return {0, held}
  end
  redis.call('HINCRBY', key, node, 1)
  held = held + 1
else
  local mine = tonumber(redis.call('HGET', key, node) or '0') or 0
  local new
  if op == 'release' then
    new = math.max(0, mine - n)
  else
    new = math.max(0, n)
  end
  held = held - math.max(0, mine) + new
  if new > 0 then
    redis.call('HSET', key, node, new)
  else
    redis.call('HDEL', key, node)
  end
end
if held > 0 or redis.call('EXISTS', key) == 1 then
  redis.call('PEXPIRE', key, ttl)
end
return {1, held}
