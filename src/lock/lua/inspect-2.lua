--[[
  Read a record together with Redis' own clock, so lease and retention left are exact.

  Input:
    KEYS[1] record key (key mode) or hash key (hash mode)
    KEYS[2] expiry index of the hash (hash mode; ignored in key mode)
    ARGV[1] field: the task id in hash mode, '' in key mode

  Output:
    { now, recordJson | false, retentionLeftMs }
]]
--- @include "includes/record"

local key, indexKey, field = KEYS[1], KEYS[2], ARGV[1]
local now = nowMs()
if field == '' then
  return {now, redis.call('GET', key), redis.call('PTTL', key)}
end
local expiresAt = redis.call('ZSCORE', indexKey, field)
if not expiresAt or tonumber(expiresAt) <= now then
  return {now, false, -2}
end
return {now, redis.call('HGET', key, field), tonumber(expiresAt) - now}
