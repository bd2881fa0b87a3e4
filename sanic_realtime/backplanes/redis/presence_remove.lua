-- A connection left a presence channel. KEYS as presence_add.lua's (KEYS[6] unused).
-- ARGV[1] user, ARGV[2] "u" or "a", ARGV[3] this worker's field, ARGV[4] the leave
-- member, ARGV[5] when the leave is due (ms). Returns 1 when it was the user's last
-- connection anywhere: their leave is now pending (presence_due.lua announces it).
if redis.call('HINCRBY', KEYS[4], ARGV[3], -1) <= 0 then
  redis.call('HDEL', KEYS[4], ARGV[3])
end
if ARGV[2] == 'a' then
  if redis.call('DECR', KEYS[3]) <= 0 then
    redis.call('DEL', KEYS[3])
  end
  return 0
end
local n = redis.call('HINCRBY', KEYS[1], ARGV[1], -1)
if n > 0 then
  return 0
end
redis.call('HSET', KEYS[1], ARGV[1], 0) -- listed with 0 connections until it is due
redis.call('ZADD', KEYS[5], ARGV[5], ARGV[4])
return 1
