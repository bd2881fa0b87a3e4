-- A connection joined a presence channel (see presence.py).
-- KEYS[1] users hash (user -> connections, every worker), KEYS[2] info hash (user ->
-- [role, since]), KEYS[3] anonymous count, KEYS[4] this worker's hash (field -> its
-- connections), KEYS[5] the pending leaves (zset "channel\0user" -> due ms), KEYS[6] the
-- workers (zset node -> expiry ms).
-- ARGV[1] user ("" with ARGV[2] = "a": anonymous), ARGV[2] "u" or "a", ARGV[3] this
-- worker's field, ARGV[4] info JSON, ARGV[5] the leave member, ARGV[6] node, ARGV[7]
-- node expiry ms, ARGV[8] pub/sub channel ("" : no join announcement), ARGV[9] the join
-- message. Returns 1 when the user's first connection anywhere joined (announced).
redis.call('ZADD', KEYS[6], ARGV[7], ARGV[6])
redis.call('HINCRBY', KEYS[4], ARGV[3], 1)
if ARGV[2] == 'a' then
  redis.call('INCR', KEYS[3])
  return 0
end
local n = redis.call('HINCRBY', KEYS[1], ARGV[1], 1)
if n > 1 then
  return 0
end
if redis.call('ZREM', KEYS[5], ARGV[5]) == 1 then
  return 0 -- back within leave_delay: no leave, no join
end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[4])
if ARGV[8] ~= '' then
  redis.call('PUBLISH', ARGV[8], ARGV[9])
end
return 1
