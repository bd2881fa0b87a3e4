-- Where a channel's history stands.
--
-- KEYS: meta. Returns {epoch, last offset, 1 if the history is of this Redis process
-- (run_id, see publish.lua)}, or {} when there is none.
local meta = redis.call('HMGET', KEYS[1], 'e', 's', 'r')
if not meta[1] then
  return {}
end
return {meta[1], meta[2], meta[3] == string.match(redis.call('INFO', 'server'), 'run_id:(%x+)') and 1 or 0}
