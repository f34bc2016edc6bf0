-- Store.commit for RedisStore: every compare-and-set is checked before anything is written, and
-- Redis runs a script atomically, so the writes apply all together or not at all.
--
-- KEYS[1]      the namespace's key index: a sorted set, every score 0, so ZRANGEBYLEX lists by prefix
-- KEYS[1 + i]  the entry hash of write i: fields v (version) and d (JSON text)
-- ARGV, per write i, three values: op ('put' | 'delete'), expected version ('' = any), JSON text ('' for a delete)
-- ARGV[3n + 1 ..] the short keys (as stored in the index), one per write
--
-- Returns {'ok', result1, result2, ...} — a put's new version, a delete's count of removed keys (0 or 1) —
-- or {'conflict', i, actualVersion}.
local n = #KEYS - 1
for i = 1, n do
  local expected = ARGV[(i - 1) * 3 + 2]
  if expected ~= '' then
    local actual = tonumber(redis.call('HGET', KEYS[1 + i], 'v') or '0')
    if actual ~= tonumber(expected) then
      return {'conflict', i, actual}
    end
  end
end
local result = {'ok'}
for i = 1, n do
  local op = ARGV[(i - 1) * 3 + 1]
  local short = ARGV[3 * n + i]
  if op == 'put' then
    local version = redis.call('HINCRBY', KEYS[1 + i], 'v', 1)
    redis.call('HSET', KEYS[1 + i], 'd', ARGV[(i - 1) * 3 + 3])
    redis.call('ZADD', KEYS[1], 0, short)
    result[#result + 1] = version
  else
    redis.call('ZREM', KEYS[1], short)
    result[#result + 1] = redis.call('DEL', KEYS[1 + i])
  end
end
return result
