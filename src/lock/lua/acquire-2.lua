--[[
  Acquire the pair record for a task: become its executor, or learn why not.

  Input:
    KEYS[1] record key (key mode) or hash key (hash mode)
    KEYS[2] expiry index of the hash (hash mode; ignored in key mode)
    KEYS[3] optional (absent on a Cluster, see ARGV[17]): the epoch key, a hash
            { runId, since } naming the server that wrote it and since when (ms) its clients
            have talked to it
    ARGV[1] field: the task id in hash mode, '' in key mode
    ARGV[2] member name of the caller (e.g. 'eu')
    ARGV[3] token: unique per run() call
    ARGV[4] lease in ms
    ARGV[5] retention in ms
    ARGV[6] peer-failure policy: 'takeover' | 'respect'
    ARGV[7] liveness channel of the caller's process, '' when liveness is off
    ARGV[8] liveness grace in ms: how long an owner's channel must stay empty before takeover
    ARGV[9] liveness warm-up in seconds: after a restart of this Redis (the record survived in
            the AOF) or a failover to it (a promoted replica), live owners need time to
            resubscribe, so for an owner granted before that an empty channel proves nothing
            until this server's epoch (KEYS[3]) is this old

    ARGV[10] session key of the caller's process, '' when sessions are off. While it exists
            the process is alive and every record it owns is leased: one key refreshed per
            process replaces a heartbeat per record. Read for the *owner* of a record without
            being declared in KEYS (Redis allows that for keys on the same node). On a Cluster
            a process keeps one session key and one liveness channel on each master, in a
            hash tag of that master's slots; ARGV[7] and ARGV[10] are the caller's on this
            record's master (includes/owner).
    ARGV[11] lowest fence this caller may be granted (default 1). Every grant but a started
            claim's is fenced at least this server's clock in ms, far above it, so this only
            matters as a floor: a twin that was not chosen asks with 2.
    ARGV[12] a claim: granted only while the record is absent or waiting; anything else
            answers TAKEN. '1': of a run that has already started with fence 1 (a chosen
            executor that starts before any answer), granted fence 1; '2': of a run that starts
            only once granted, fenced on the clock as any grant; '0' or absent: no claim.
    ARGV[13] settle channel: a grant that ends a standby's wait (state 'waiting') is announced
            there, so the waiting twin learns who runs the job without asking again.
    ARGV[14] the caller's own liveness grace in ms, kept with its grant: how long its
            liveness channel may stay empty before a twin takes the record over. Derived by
            the caller from its measured round trip (a process 80 ms away
            from the store needs longer to resubscribe than one next to it); the grace a
            twin applies is the larger of this and its own ARGV[8].
    ARGV[15] ms a twin that was not chosen leaves a 'waiting' record to the chosen executor's
            claim, counted from the mark (its standbyGraceMs); 0 or absent: no wait. Until
            then it is answered BUSY (owner '', recheck: the time left), however its copy came
            back (a park that ended early, a stalled job recovered).
    ARGV[16] '1' on a Cluster: liveness channels are sharded (SSUBSCRIBE, SHARDNUMSUB), the
            caller's own channel must have its subscriber here before a grant, and keys read
            without being declared may be on another node after a resharding.
    ARGV[17] on a Cluster: the epoch key of this record's master (read undeclared: a declared
            key would have to share the record's slot), '' when none.
    ARGV[18] with a started claim (ARGV[12] '1'): the run's result, JSON, when the run ended
            before its claim was sent: granted, the record is settled 'done' at once (no
            session needed: nothing runs under it) and announced as complete-2 would, so a
            short job costs one call, not a claim and a complete. '' or absent: a plain claim.
    ARGV[19] with ARGV[18]: the run's last reported progress, JSON, '' when none.

  Output (codes and field layouts: replies.json):
    {GRANTED, fence, takeoverReason ('' | 'expired' | 'failed' | 'released' | 'disconnected'),
      attempts, idleMs (ms the job had no executor before a takeover; IDLE_UNKNOWN when
      unknown or no takeover)}
        the caller is the executor
    {BUSY, fence, owner, recheckMs, ownerLiveChannel, ownerSessionKey}
        another owner holds the record (includes/owner: leased, connected, no orphan)
    {DONE, fence, owner, result | false}              the stored result
    {FAILED, fence, owner, error | false}             failed, and the policy is 'respect' (or
                                                      the failure is final: a result that could
                                                      not be stored must not run again)
    {TAKEN, fence, state, owner}                      a claim (ARGV[12]) of a record someone
                                                      else already holds or held: no grant
    {NO_SESSION}                                      the caller's session key is gone: no grant
                                                      (a shadow would take it for a dead owner's)
    {UNPLACED, what}                                  Cluster: the caller's keys are not on this
                                                      node ('moved': its slot map is stale) or its
                                                      channel has no subscriber here yet
                                                      ('unsubscribed'): no grant, ask again
    {CORRUPT}                                         the record is unreadable
]]
--- @include "replies"
--- @include "includes/record"
--- @include "includes/epoch"
--- @include "includes/owner"
--- @include "includes/settle"

local key, indexKey = KEYS[1], KEYS[2]
local field, member, token = ARGV[1], ARGV[2], ARGV[3]
local leaseMs, retentionMs = tonumber(ARGV[4]), tonumber(ARGV[5])
local policy, liveChannel, graceMs = ARGV[6], ARGV[7], tonumber(ARGV[8])
local warmupS = tonumber(ARGV[9])
local sessionKey = ARGV[10]
local minFence = tonumber(ARGV[11]) or 1
local claimKind = ARGV[12] or '0'
local claim = claimKind == '1' or claimKind == '2'
local channel = ARGV[13] or ''
local ownGraceMs = tonumber(ARGV[14]) or 0
local waitForClaimMs = tonumber(ARGV[15]) or 0
local sharded = ARGV[16] == '1'
local result = ARGV[18] or ''
local completing = claimKind == '1' and result ~= ''
local epochKey = KEYS[3]
if not epochKey and (ARGV[17] or '') ~= '' then epochKey = ARGV[17] end
-- The caller named this master's keys by its own slot map, stale after a resharding.
if sharded and epochKey and not onThisNode('EXISTS', epochKey) then
  return {REPLY.UNPLACED, 'moved'}
end

local now = nowMs()
local rec = loadRecord(key, indexKey, field, now)
if rec == false then return {REPLY.CORRUPT} end

local reason = ''
local waiting = rec and rec.state == 'waiting'
if completing and rec and rec.state == 'done' and rec.fence == 1 and rec.owner == member
    and rec.result == result then
  -- The same claim-and-complete again (its first reply was lost): it took effect.
  return {REPLY.GRANTED, 1, rec.takeover or '', rec.attempts or 1}
end
if rec and claim and not waiting and not (rec.state == 'running' and rec.token == token) then
  return {REPLY.TAKEN, rec.fence, rec.state, rec.owner or ''}
end
local markedAt
if waiting then
  -- A standby twin's mark: nobody has run the job yet.
  markedAt = rec.createdAt
  local waited = now - (markedAt or now)
  if waitForClaimMs > 0 and waited < waitForClaimMs then
    return {REPLY.BUSY, 0, '', waitForClaimMs - waited, '', ''}
  end
  rec = nil
end
if rec then
  local state = rec.state
  if state == 'running' then
    if rec.token == token then
      -- The same call retried after a lost reply: keep its grant. A started claim's token
      -- asked again by anything but that claim (the caller lost the claim's reply and starts
      -- a new run) is fenced anew: a second run must never share the first one's fence 1.
      if claimKind ~= '1' and rec.fence == 1 then
        rec.fence = math.max(2, minFence, now)
        rec.attempts = (rec.attempts or 0) + 1
        rec.grantedAt = now
      end
      rec.leaseUntil = now + leaseMs
      saveRecord(key, indexKey, field, rec, now, retentionMs)
      return {REPLY.GRANTED, rec.fence, rec.takeover or '', rec.attempts}
    end
    local recheck
    reason, recheck = ownerStatus(rec, now, {
      epochKey = epochKey,
      retentionMs = retentionMs,
      warmupS = warmupS,
      graceMs = graceMs,
      sharded = sharded,
      leaseMs = leaseMs,
      save = function() saveRecord(key, indexKey, field, rec, now, retentionMs) end,
    })
    if reason == '' then
      return {REPLY.BUSY, rec.fence, rec.owner, recheck, rec.live or '', rec.skey or ''}
    end
  elseif state == 'done' then
    return {REPLY.DONE, rec.fence, rec.owner, rec.result or false, rec.progress or false}
  elseif state == 'failed' then
    if policy == 'respect' or rec.final then
      return {REPLY.FAILED, rec.fence, rec.owner, rec.error or false}
    end
    reason = 'failed'
  elseif state == 'released' then
    reason = 'released'
  else
    return {REPLY.CORRUPT}
  end
end

-- A grant under a session key that has vanished (evicted, expired while this process was
-- frozen, lost in a failover) would look dead to the twin at once: refuse it, and let the
-- caller make its session anew first.
if completing then
  -- Settled in this call: no run goes on under the caller's session.
elseif sharded and sessionKey ~= '' then
  -- The caller placed its keys by its own slot map: stale after a resharding.
  local exists = onThisNode('EXISTS', sessionKey)
  if not exists then return {REPLY.UNPLACED, 'moved'} end
  if exists == 0 then return {REPLY.NO_SESSION} end
  -- Its sharded subscriber on this master may still be on its way (a new master after a
  -- failover): a grant now would look like a dead owner's to a twin.
  if liveChannel ~= '' and redis.call('PUBSUB', 'SHARDNUMSUB', liveChannel)[2] == 0 then
    return {REPLY.UNPLACED, 'unsubscribed'}
  end
elseif sessionKey ~= '' and redis.call('EXISTS', sessionKey) == 0 then
  return {REPLY.NO_SESSION}
end

-- A fence never repeats for a task, even when its record is lost (a failover that drops
-- acknowledged writes, a restart without AOF): each grant is fenced at least this server's
-- clock in ms, and above the record's last fence (which a clock that steps back cannot
-- undercut while the record lives). A lost grant was fenced at most the clock of its own
-- time, so a later grant on any server whose clock agrees to within the time between the two
-- is fenced higher. A claim's run started with fence 1 before any answer: it keeps 1, and is
-- granted only while no other grant exists (see ARGV[12]); a claim that waits for its
-- answer before its run starts is fenced on the clock like any grant.
local fence = 1
local attempts = 1
if claimKind ~= '1' then
  fence = math.max(rec and rec.fence + 1 or 0, minFence, now)
end
if rec then attempts = (rec.attempts or 0) + 1 end
local granted = {
  state = 'running',
  owner = member,
  token = token,
  fence = fence,
  attempts = attempts,
  leaseUntil = now + leaseMs,
  grantedAt = now,
  createdAt = rec and rec.createdAt or markedAt or now,
}
if reason ~= '' then granted.takeover = reason end
if liveChannel ~= '' then
  granted.live = liveChannel
  if ownGraceMs > graceMs then granted.grace = ownGraceMs end
end
if sessionKey ~= '' then granted.skey = sessionKey end
-- How long the job had no executor before this takeover, as far as this store can tell:
-- since the settle (failed, released), since the owner's channel was first seen empty
-- (disconnected) or since its own lease ended (expired). A session that ran out leaves no
-- trace of when it did: unknown.
local idleMs = REPLY.IDLE_UNKNOWN
if reason == 'failed' or reason == 'released' then
  idleMs = now - (rec.updatedAt or now)
elseif reason == 'disconnected' and rec.goneSince then
  -- Unset when its lease ran out before anyone saw its channel empty: unknown.
  idleMs = now - rec.goneSince
elseif reason == 'expired' and (rec.skey or '') == '' then
  idleMs = now - rec.leaseUntil
end
-- Stamp this server's epoch before it is needed: replicated, it is what tells a promoted
-- replica that its epoch is new. Only when absent, so INFO is read once per server.
if epochKey then
  -- Read-only in the common case: the key is stamped when absent and its retention renewed
  -- once it is half spent, not written (and replicated) with every grant.
  local left = redis.call('PTTL', epochKey)
  if left == -2 then
    epochSince(epochKey, now, retentionMs)
  elseif left < retentionMs / 2 then
    redis.call('PEXPIRE', epochKey, retentionMs)
  end
end
if completing then
  granted.state = 'done'
  clearRunning(granted)
  granted.result = result
  if (ARGV[19] or '') ~= '' then granted.progress = ARGV[19] end
end
saveRecord(key, indexKey, field, granted, now, retentionMs)
if completing then
  announceSettled(channel, key, field, 'done', granted, result, ARGV[19] or '')
elseif waiting and channel ~= '' then
  redis.call('PUBLISH', channel, cjson.encode({key, field}))
end
return {REPLY.GRANTED, fence, reason, attempts, idleMs}
