-- The leaves due by now, each taken by exactly one caller (the ZREM). KEYS[1] the
-- pending leaves; ARGV[1] now (ms), ARGV[2] at most this many, ARGV[3] the key prefix
-- ("{prefix}:presence:"). Returns a flat list: channel, user, info JSON, ... of the users
-- who left (a user back since has connections again and is skipped).
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
local out = {}
for _, member in ipairs(due) do
  redis.call('ZREM', KEYS[1], member)
  local cut = string.find(member, '\0', 1, true)
  local channel = string.sub(member, 1, cut - 1)
  local user = string.sub(member, cut + 1)
  local users = ARGV[3] .. channel .. ':u'
  local info_key = ARGV[3] .. channel .. ':i'
  local n = tonumber(redis.call('HGET', users, user) or '0')
  if n <= 0 then
    redis.call('HDEL', users, user)
    local info = redis.call('HGET', info_key, user) or '[null,0]'
    redis.call('HDEL', info_key, user)
    table.insert(out, channel)
    table.insert(out, user)
    table.insert(out, info)
  end
end
return out
