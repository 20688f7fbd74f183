--[[
  Extend the lease of the running owner.

  Input:
    KEYS[1] record key (key mode) or hash key (hash mode)
    KEYS[2] expiry index of the hash (hash mode; ignored in key mode)
    KEYS[3] optional (absent on a Cluster): the epoch key (see acquire). A heartbeat stamps
            the epoch before it writes, so a record refreshed after a restart or a failover
            is never older than the epoch it was refreshed in (acquire's orphan check)
    ARGV[1] field: the task id in hash mode, '' in key mode
    ARGV[2] token of the owner
    ARGV[3] fence of the owner
    ARGV[4] lease in ms
    ARGV[5] retention in ms
    ARGV[6] on a Cluster: the epoch key of this record's master (undeclared, see acquire), ''
    ARGV[7] on a Cluster: the owner's session key on this record's master now, '' to keep
    ARGV[8] on a Cluster: the owner's liveness channel on this record's master now, '' to keep
            A resharding that moved the record's slot to another master left its session
            key and channel on the old one: the owner re-stamps the record with the new
            master's (includes/owner: until then a twin gives it one lease).

  Output (codes and field layouts: replies.json):
    {OK, fence}                   extended
    {STALE, state, fence, owner}  refused: the caller is not the current owner (stale fence)
    {MISSING}                     the record is gone (retention passed)
    {CORRUPT}                     the record is unreadable
]]
--- @include "replies"
--- @include "includes/record"
--- @include "includes/epoch"

local key, indexKey = KEYS[1], KEYS[2]
local field, token, fence = ARGV[1], ARGV[2], tonumber(ARGV[3])
local leaseMs, retentionMs = tonumber(ARGV[4]), tonumber(ARGV[5])

local now = nowMs()
local rec = loadRecord(key, indexKey, field, now)
if rec == nil then return {REPLY.MISSING} end
if rec == false then return {REPLY.CORRUPT} end
if not isOwner(rec, token, fence) then
  return {REPLY.STALE, rec.state, rec.fence, rec.owner}
end
-- Extending after the lease ran out is safe: the takeover scripts run atomically, so a
-- record still naming this owner means nobody took it over.
local epochKey = KEYS[3]
if not epochKey and (ARGV[6] or '') ~= '' then
  -- Named by the caller's slot map, which a resharding may have made stale: a key on
  -- another node is skipped (the next beat stamps the right one), never an error that
  -- would stop the beat.
  if onThisNode('EXISTS', ARGV[6]) then epochKey = ARGV[6] end
end
if epochKey then epochSince(epochKey, now, retentionMs) end
if (ARGV[7] or '') ~= '' and rec.skey then
  rec.skey = ARGV[7]
  rec.movedSince = nil
  -- An absence noted on the old node says nothing about the channel named now.
  rec.goneSince = nil
end
if (ARGV[8] or '') ~= '' and rec.live then rec.live = ARGV[8] end
rec.leaseUntil = now + leaseMs
saveRecord(key, indexKey, field, rec, now, retentionMs)
return {REPLY.OK, rec.fence}
