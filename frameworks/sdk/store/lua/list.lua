-- Store.list for RedisStore: the keys under a prefix and their values, read in one atomic step so
-- a list never shows half of a commit.
--
-- KEYS[1]  the namespace's key index (sorted set, every score 0)
-- ARGV[1]  the entry hash prefix (the full Redis key of entry k is ARGV[1] .. k)
-- ARGV[2]  the key prefix to list ('' = all)
--
-- Entry hashes are derived, not passed in KEYS: the caller cannot know them before the read. All
-- of a namespace's keys share one hash tag, so they live in one slot even under Redis Cluster.
--
-- Returns a flat list: key1, version1, json1, key2, ...
local keys = redis.call('ZRANGEBYLEX', KEYS[1], '[' .. ARGV[2], '[' .. ARGV[2] .. '\255')
local out = {}
for _, key in ipairs(keys) do
  local fields = redis.call('HMGET', ARGV[1] .. key, 'v', 'd')
  if fields[1] then
    out[#out + 1] = key
    out[#out + 1] = fields[1]
    out[#out + 1] = fields[2]
  end
end
return out
