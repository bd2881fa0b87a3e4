-- Workers whose heartbeat expired (killed, or cut off from Redis longer than their
-- expiry): their connections are taken out of presence, each worker by exactly one
-- caller (the ZREM). KEYS[1] the workers zset; ARGV[1] now (ms), ARGV[2] the key prefix
-- ("{prefix}:presence:"), ARGV[3] a node to reap whatever its expiry ("" : none; a
-- worker re-registering itself). A user left with no connection is due to leave now.
-- Returns the nodes reaped.
local nodes = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, 10)
if ARGV[3] ~= '' then
  table.insert(nodes, ARGV[3])
end
local reaped = {}
for _, node in ipairs(nodes) do
  redis.call('ZREM', KEYS[1], node)
  local own = ARGV[2] .. 'node:' .. node
  local fields = redis.call('HGETALL', own)
  for i = 1, #fields, 2 do
    local field, k = fields[i], tonumber(fields[i + 1])
    if string.sub(field, 1, 1) == 'a' then
      local anon = ARGV[2] .. string.sub(field, 2) .. ':a'
      if redis.call('DECRBY', anon, k) <= 0 then
        redis.call('DEL', anon)
      end
    else
      local cut = string.find(field, '\0', 2, true)
      local channel = string.sub(field, 2, cut - 1)
      local user = string.sub(field, cut + 1)
      local users = ARGV[2] .. channel .. ':u'
      if redis.call('HINCRBY', users, user, -k) <= 0 then
        redis.call('HSET', users, user, 0)
        redis.call('ZADD', ARGV[2] .. 'leaving', ARGV[1], channel .. '\0' .. user)
      end
    end
  end
  redis.call('DEL', own)
  table.insert(reaped, node)
end
return reaped
