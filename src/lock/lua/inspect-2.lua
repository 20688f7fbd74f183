--[[
  Read a record together with Redis' own clock, so lease and retention left are exact.

  Input:
    KEYS[1] record key (key mode) or hash key (hash mode)
    KEYS[2] expiry index of the hash (hash mode; ignored in key mode)
    ARGV[1] field: the task id in hash mode, '' in key mode
    ARGV[2] optional: retention in ms, given by a standby twin (a job whose chosen executor is
            the other twin). An absent record is then marked {state = 'waiting', fence = 0},
            and that mark is returned: the executor's grant replaces it and announces itself
            on the settle channel, and the mark's createdAt tells how long the standby has
            waited for a claim.

  Output (field layout INSPECT: replies.json; no reply code):
    {now, recordJson | false, retentionLeftMs, sessionLeftMs}
      sessionLeftMs: PTTL of the owner's session key when the record is running under a
      session (its lease then lives there, not in the record); NOT_UNDER_SESSION when there is
      none.
      The session key is read without being declared, like acquire does; on a Cluster after
      a resharding it may be on another node: then NOT_UNDER_SESSION (unknown here).
]]
--- @include "replies"
--- @include "includes/record"

local key, indexKey, field = KEYS[1], KEYS[2], ARGV[1]
local now = nowMs()

if ARGV[2] and loadRecord(key, indexKey, field, now) == nil then
  saveRecord(key, indexKey, field, {state = 'waiting', fence = 0, owner = '', createdAt = now},
    now, tonumber(ARGV[2]))
end

local function withSession(raw, retentionLeft)
  local sessionLeft = REPLY.NOT_UNDER_SESSION
  if raw then
    local ok, rec = pcall(cjson.decode, raw)
    if ok and type(rec) == 'table' and rec.state == 'running' and type(rec.skey) == 'string' then
      sessionLeft = onThisNode('PTTL', rec.skey) or sessionLeft
    end
  end
  return {now, raw or false, retentionLeft, sessionLeft}
end

if field == '' then
  return withSession(redis.call('GET', key), redis.call('PTTL', key))
end
local expiresAt = redis.call('ZSCORE', indexKey, field)
if not expiresAt or tonumber(expiresAt) <= now then
  return {now, false, -2, REPLY.NOT_UNDER_SESSION}
end
return withSession(redis.call('HGET', key, field), tonumber(expiresAt) - now)
