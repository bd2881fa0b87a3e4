-- Publish one event: give it the channel's next offset (and, for a new history, its
-- epoch), append it to the stream, PUBLISH it. Atomic, so ids are strictly increasing
-- across all publishers and pub/sub carries events in id order.
--
-- KEYS: meta, stream. ARGV: new epoch, history size, history ttl (ms), meta ttl (ms),
-- pub/sub channel, header, envelope before the id, envelope after the id, the run_id of
-- this Redis process (read by the caller when its connection was made: pipeline.py).
-- Returns {epoch, offset, the workers that got it from pub/sub (PUBLISH's count)}.
--
-- The history's run field is the run_id of the Redis process that started its epoch. A
-- Redis that restarted (even from a snapshot or AOF, which may be older than what clients
-- have seen), or a replica promoted by a failover, starts a new epoch at the first
-- publish, so an id is never given out twice. A restart breaks the caller's connection,
-- so the run_id it passes is always that of the process running the script.
local run = ARGV[9]
local meta = redis.call('HMGET', KEYS[1], 'e', 'r')
local epoch = meta[1]
if not epoch or meta[2] ~= run then
  epoch = ARGV[1]
  redis.call('DEL', KEYS[2])
  redis.call('HSET', KEYS[1], 'e', epoch, 's', 0, 'r', run)
end
local offset = redis.call('HINCRBY', KEYS[1], 's', 1)
redis.call('PEXPIRE', KEYS[1], ARGV[4])
local msg = ARGV[6] .. '\n' .. ARGV[7] .. epoch .. ':' .. string.format('%d', offset) .. ARGV[8]
if tonumber(ARGV[2]) > 0 then
  redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], string.format('%d-0', offset), 'd', msg)
  redis.call('PEXPIRE', KEYS[2], ARGV[3])
end
local receivers = redis.call('PUBLISH', ARGV[5], msg)
return {epoch, offset, receivers}
