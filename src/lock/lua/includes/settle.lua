--[[
  Shared by complete / fail / release: the owner (token + fence) moves a running record
  to a settled state and announces it on the settle channel, so waiting shadows wake at once.
  Replies (replies.json): {OK, fence} settled (or already settled so by this fence: a retry);
  {STALE, state, fence, owner} refused; {MISSING} record gone; {CORRUPT} record unreadable.
]]
--- @include "replies"
--- @include "includes/record"

local function settle(key, indexKey, field, token, fence, retentionMs, channel, state, payloadName, payload, final, progress)
  local now = nowMs()
  local rec = loadRecord(key, indexKey, field, now)
  if rec == nil then return {REPLY.MISSING} end
  if rec == false then return {REPLY.CORRUPT} end
  if not isOwner(rec, token, fence) then
    if rec.state == state and rec.fence == fence then
      -- The same settle again (its first reply was lost): it already took effect.
      return {REPLY.OK, rec.fence}
    end
    return {REPLY.STALE, rec.state, rec.fence, rec.owner}
  end
  rec.state = state
  rec.leaseUntil = nil
  rec.token = nil
  rec.live = nil
  rec.skey = nil
  rec.goneSince = nil
  if payloadName ~= '' and payload ~= '' then rec[payloadName] = payload end
  if final then rec.final = true end
  if progress and progress ~= '' then rec.progress = progress end
  saveRecord(key, indexKey, field, rec, now, retentionMs)
  redis.call('PUBLISH', channel, cjson.encode({key, field}))
  return {REPLY.OK, rec.fence}
end
