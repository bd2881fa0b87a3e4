-- The events after an id, for a resume.
--
-- KEYS: meta, stream. ARGV: the id's epoch, its offset, the oldest publish time still
-- resumable (Unix seconds: now - history.ttl). Everything is checked before the events
-- are read, so a resume that cannot succeed reads (and sends back) none of them. Returns
-- false (a nil reply) when the events after the id cannot all be given: no history of
-- this Redis process (run_id, see publish.lua), another epoch, an offset beyond the
-- newest, or the first event after the id trimmed (size) or expired (ttl); else {last
-- offset, the entries after the id up to it}. The header of a message is [origin,
-- number, time, ...] (see codec.Head).
local meta = redis.call('HMGET', KEYS[1], 'e', 's', 'r')
if not meta[1] or meta[3] ~= string.match(redis.call('INFO', 'server'), 'run_id:(%x+)') or meta[1] ~= ARGV[1] then
  return false
end
local top = tonumber(meta[2])
local after = tonumber(ARGV[2])
if after > top then
  return false
end
if after == top then
  return {meta[2], {}}
end
local first = string.format('%d-0', after + 1)
local head = redis.call('XRANGE', KEYS[2], first, first)
if #head == 0 then
  return false
end
local fields = head[1][2]
for i = 1, #fields - 1, 2 do
  if fields[i] == 'd' then
    local msg = fields[i + 1]
    local nl = string.find(msg, '\n', 1, true)
    if nl then
      local ok, h = pcall(cjson.decode, string.sub(msg, 1, nl - 1))
      if ok and type(h) == 'table' and type(h[3]) == 'number' and h[3] < tonumber(ARGV[3]) then
        return false
      end
    end
  end
end
return {meta[2], redis.call('XRANGE', KEYS[2], first, string.format('%d-0', top))}
