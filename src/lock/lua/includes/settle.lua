--[[
  Shared by complete / fail / release: the owner (token + fence) moves a running record
  to a settled state and announces it on the settle channel, so waiting shadows wake at once.
  The announcement is {key, field, state, fence, owner, result, progress}: a 'done' result
  (and progress) of at most INLINE_BYTES together rides along, so a shadow completes its copy
  without reading the record; otherwise both are '' and a shadow reads it.
  Replies (replies.json): {OK, fence} settled (or already settled so by this fence: a retry);
  {STALE, state, fence, owner} refused; {MISSING} record gone; {CORRUPT} record unreadable.
]]
--- @include "replies"
--- @include "includes/record"
--- @include "record-fields"

local INLINE_BYTES = 1024

-- Announces a settled record on the settle channel (see above).
local function announceSettled(channel, key, field, state, rec, payload, progress)
  local inline, inlineProgress = '', ''
  if state == 'done' and payload ~= '' and #payload + #(progress or '') <= INLINE_BYTES then
    inline, inlineProgress = payload, progress or ''
  end
  redis.call('PUBLISH', channel,
    cjson.encode({key, field, state, rec.fence, rec.owner or '', inline, inlineProgress}))
end

local function settle(key, indexKey, field, token, fence, retentionMs, channel, state, payloadName, payload, final, progress)
  local now = nowMs()
  local rec = loadRecord(key, indexKey, field, now)
  if rec == nil then return {REPLY.MISSING} end
  if rec == false then return {REPLY.CORRUPT} end
  if not isOwner(rec, token, fence) then
    if rec.state == state and rec.fence == fence then
      -- The same settle again (its first reply was lost): it already took effect. Written
      -- again, so that a WAIT sent after this call (durability) counts a write of its own
      -- connection: the first one may have been made on a connection since replaced.
      saveRecord(key, indexKey, field, rec, now, retentionMs)
      return {REPLY.OK, rec.fence}
    end
    return {REPLY.STALE, rec.state, rec.fence, rec.owner}
  end
  rec.state = state
  clearRunning(rec)
  if payloadName ~= '' and payload ~= '' then rec[payloadName] = payload end
  if final then rec.final = true end
  if progress and progress ~= '' then rec.progress = progress end
  saveRecord(key, indexKey, field, rec, now, retentionMs)
  announceSettled(channel, key, field, state, rec, payload, progress)
  return {REPLY.OK, rec.fence}
end
