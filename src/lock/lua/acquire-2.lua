--[[
  Acquire the pair record for a task: become its executor, or learn why not.

  Input:
    KEYS[1] record key (key mode) or hash key (hash mode)
    KEYS[2] expiry index of the hash (hash mode; ignored in key mode)
    ARGV[1] field: the task id in hash mode, '' in key mode
    ARGV[2] member name of the caller (e.g. 'eu')
    ARGV[3] token: unique per run() call
    ARGV[4] lease in ms
    ARGV[5] retention in ms
    ARGV[6] peer-failure policy: 'takeover' | 'respect'
    ARGV[7] liveness channel of the caller's process, '' when liveness is off
    ARGV[8] liveness grace in ms: how long an owner's channel must stay empty before takeover
    ARGV[9] liveness warm-up in seconds: after a restart of this Redis (the record survived in
            the AOF), live owners need time to resubscribe, so for an owner granted before the
            restart an empty channel proves nothing until the server has been up this long

  Output:
    { 1, fence, takeoverReason ('' | 'expired' | 'failed' | 'released' | 'disconnected'), attempts }
        granted: the caller is the executor
    { 2, fence, owner, recheckMs, ownerLiveChannel }  busy: another owner holds a valid lease
    { 3, fence, owner, result | false }               done: the stored result
    { 4, fence, owner, error | false }                failed, and the policy is 'respect'
    { -1 }                                            the record is unreadable
]]
--- @include "includes/record"

local key, indexKey = KEYS[1], KEYS[2]
local field, member, token = ARGV[1], ARGV[2], ARGV[3]
local leaseMs, retentionMs = tonumber(ARGV[4]), tonumber(ARGV[5])
local policy, liveChannel, graceMs = ARGV[6], ARGV[7], tonumber(ARGV[8])
local warmupS = tonumber(ARGV[9])

local now = nowMs()
local rec = loadRecord(key, indexKey, field, now)
if rec == false then return {-1} end

local reason = ''
if rec then
  local state = rec.state
  if state == 'running' then
    if rec.token == token then
      -- The same call retried after a lost reply: keep its grant.
      rec.leaseUntil = now + leaseMs
      saveRecord(key, indexKey, field, rec, now, retentionMs)
      return {1, rec.fence, rec.takeover or '', rec.attempts}
    end
    if rec.leaseUntil > now then
      local recheck = rec.leaseUntil - now
      local live = rec.live or ''
      if live ~= '' then
        -- A dead process closes its connections at once, so an empty liveness channel
        -- means the owner is gone long before its lease says so. The grace absorbs a
        -- subscriber that is merely reconnecting.
        local subscribers = redis.call('PUBSUB', 'NUMSUB', live)[2]
        if subscribers == 0 then
          local info = redis.call('INFO', 'server')
          local uptime = tonumber(string.match(info, 'uptime_in_seconds:(%d+)')) or warmupS
          -- The owner subscribed before it was granted. Granted for sure after this server
          -- started (now - uptime, rounded down) means it subscribed here: its absence is real.
          if uptime < warmupS and (rec.grantedAt or 0) <= now - uptime * 1000 then
            subscribers = 1
            recheck = math.min(recheck, (warmupS - uptime) * 1000)
          end
        end
        if subscribers == 0 then
          if not rec.goneSince then
            rec.goneSince = now
            saveRecord(key, indexKey, field, rec, now, retentionMs)
          end
          if now - rec.goneSince >= graceMs then
            reason = 'disconnected'
          else
            recheck = math.min(recheck, rec.goneSince + graceMs - now)
          end
        elseif rec.goneSince then
          rec.goneSince = nil
          saveRecord(key, indexKey, field, rec, now, retentionMs)
        end
      end
      if reason == '' then
        return {2, rec.fence, rec.owner, recheck, live}
      end
    else
      reason = 'expired'
    end
  elseif state == 'done' then
    return {3, rec.fence, rec.owner, rec.result or false}
  elseif state == 'failed' then
    if policy == 'respect' then
      return {4, rec.fence, rec.owner, rec.error or false}
    end
    reason = 'failed'
  elseif state == 'released' then
    reason = 'released'
  else
    return {-1}
  end
end

local fence = 1
local attempts = 1
if rec then
  fence = rec.fence + 1
  attempts = (rec.attempts or 0) + 1
end
local granted = {
  state = 'running',
  owner = member,
  token = token,
  fence = fence,
  attempts = attempts,
  leaseUntil = now + leaseMs,
  grantedAt = now,
  createdAt = rec and rec.createdAt or now,
}
if reason ~= '' then granted.takeover = reason end
if liveChannel ~= '' then granted.live = liveChannel end
saveRecord(key, indexKey, field, granted, now, retentionMs)
return {1, fence, reason, attempts}
