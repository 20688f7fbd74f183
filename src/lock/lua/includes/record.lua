--[[
  Shared helpers for every pair-record script (inlined by scripts/generate-lua.mjs).

  A record is a JSON object stored either
    - as the value of its own string key (key mode: field == ''), expiring by PX, or
    - as one field of a hash (hash mode: field ~= ''), with a sorted set (the index)
      holding each field's expiry time, because Redis has no per-field TTL we can rely on.
  All times come from Redis TIME so that no client clock matters.
]]
-- A command on a key the script did not declare (an owner's session key, an epoch key): its
-- reply, or nil when the key is on another Cluster node, which Redis refuses ("Script
-- attempted to access a non local key"): the caller's slot map, or the record's, is stale.
local function onThisNode(command, key)
  local reply = redis.pcall(command, key)
  if type(reply) == 'table' and reply.err then return nil end
  return reply
end

local function nowMs()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- Returns the record table, nil when absent (or past retention), false when unreadable.
local function loadRecord(key, indexKey, field, now)
  local raw
  if field == '' then
    raw = redis.call('GET', key)
  else
    local expiresAt = redis.call('ZSCORE', indexKey, field)
    if expiresAt and tonumber(expiresAt) <= now then
      redis.call('HDEL', key, field)
      redis.call('ZREM', indexKey, field)
      return nil
    end
    raw = redis.call('HGET', key, field)
  end
  if not raw then return nil end
  local ok, rec = pcall(cjson.decode, raw)
  if not ok or type(rec) ~= 'table' or type(rec.fence) ~= 'number' or type(rec.state) ~= 'string' then
    return false
  end
  return rec
end

-- Writes the record and refreshes its retention. In hash mode it also prunes a bounded
-- number of expired fields, so retention holds without a sweeper process.
local function saveRecord(key, indexKey, field, rec, now, retentionMs)
  rec.updatedAt = now
  local raw = cjson.encode(rec)
  if field == '' then
    redis.call('SET', key, raw, 'PX', retentionMs)
    return
  end
  redis.call('HSET', key, field, raw)
  redis.call('ZADD', indexKey, now + retentionMs, field)
  local expired = redis.call('ZRANGEBYSCORE', indexKey, '-inf', now, 'LIMIT', 0, 100)
  for i = 1, #expired do
    redis.call('HDEL', key, expired[i])
    redis.call('ZREM', indexKey, expired[i])
  end
  redis.call('PEXPIRE', key, retentionMs)
  redis.call('PEXPIRE', indexKey, retentionMs)
end

-- True when the caller (token + fence) is the current running owner of the record.
local function isOwner(rec, token, fence)
  return rec.state == 'running' and rec.token == token and rec.fence == fence
end
