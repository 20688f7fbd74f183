--[[
  Whether the owner of a running record still holds it (acquire's question about another
  member's record; inlined by scripts/generate-lua.mjs).

  The owner holds it while its lease lasts (its process's session key, else the record's own
  leaseUntil), its process's liveness channel has a subscriber (or has been empty for less
  than the grace), and the record is no orphan of a failover. After a restart or a failover
  an absence proves nothing until the server's epoch is past its warm-up.

  On a Cluster (o.sharded) the owner's session key and liveness channel are the ones it keeps
  on this record's master (a hash tag in that master's slots): read here without being
  declared, which Redis allows for a key on the same node. Its channel is a sharded one
  (SSUBSCRIBE), counted with PUBSUB SHARDNUMSUB. After a resharding moved the record's slot to
  another master they are not local any more until the owner re-stamps the record (its next
  heartbeat): meanwhile the owner holds the record for one lease from when that was first
  seen (rec.movedSince), so a dead owner is still taken over, as by a lease of its own.

  `o` carries what the caller was given:
    o.epochKey     the epoch key (on a Cluster the one on this record's master), nil if none
    o.sharded      true on a Cluster: sharded liveness channels, owner keys maybe not local
    o.leaseMs      the lease, for an owner whose keys a resharding moved away; the most a
                   grace raised by its owner may be
    o.retentionMs  retention of the records (and of the epoch key)
    o.warmupS      liveness warm-up in seconds after a restart or a failover
    o.graceMs      how long the owner's channel must stay empty before it counts as gone
    o.save()       writes `rec` back (it stamps rec.updatedAt): called when rec.goneSince
                   changes, before the orphan check reads rec.updatedAt
]]
--- @include "includes/epoch"
--- @include "includes/liveness"

-- After a restart or a failover, owners granted before it may not have reconnected yet (and
-- their session keys may have run out while the server was down): their absence proves
-- nothing until the epoch is warmupS old. Granted in this epoch means the owner's connection
-- and session were made here: their absence is real. Returns the ms left of the warm-up for
-- such an owner, else false.
local function restartedSinceGrant(rec, now, o)
  local since = epochSince(o.epochKey, now, o.retentionMs)
  local age = now - since
  if age < o.warmupS * 1000 and (rec.grantedAt or 0) < since then
    return o.warmupS * 1000 - age
  end
  return false
end

-- A resharding moved the record away from its owner's keys: the owner has one lease from
-- when that was first seen to re-stamp the record. Returns whether it still holds it, and
-- when to ask again.
local function movedOwnerLeased(rec, now, o)
  if not rec.movedSince then
    rec.movedSince = now
    o.save()
  end
  local left = rec.movedSince + o.leaseMs - now
  return left > 0, math.min(math.max(left, 1), 1000)
end

-- Whether the owner's lease lasts, and the ms until it may end (worth asking again then);
-- 'moved' as a third value when its keys are on another node (see above).
local function ownerLeased(rec, now, o)
  local skey = rec.skey or ''
  if skey == '' then
    return rec.leaseUntil > now, rec.leaseUntil - now
  end
  local left = onThisNode('PTTL', skey)
  if not left then
    -- "Script attempted to access a non local key": only a Cluster answers so.
    local leased, recheck = movedOwnerLeased(rec, now, o)
    return leased, recheck, 'moved'
  end
  if rec.movedSince then
    rec.movedSince = nil
    o.save()
  end
  if left > 0 then return true, left end
  local wait = restartedSinceGrant(rec, now, o)
  if wait then return true, wait end
  return false, left
end

-- Whether the owner's process still holds its liveness channel, given `recheck` so far; and
-- the recheck, shortened to when the grace or the warm-up ends. Keeps rec.goneSince: when
-- the channel was first seen empty.
local function ownerConnected(rec, now, o, recheck)
  local live = rec.live or ''
  if live == '' then return true, recheck end
  -- A dead process closes its connections at once, so an empty liveness channel means the
  -- owner is gone long before its lease says so. The grace absorbs a subscriber that is
  -- merely reconnecting.
  local subscribers = liveSubscribers(live, o.sharded)
  if subscribers == 0 then
    local wait = restartedSinceGrant(rec, now, o)
    if wait then
      subscribers = 1
      recheck = math.min(recheck, wait)
    end
  end
  if subscribers > 0 then
    if rec.goneSince then
      rec.goneSince = nil
      o.save()
    end
    return true, recheck
  end
  -- The owner's own grace (kept with its grant, from its round trip to this store) may be
  -- longer than ours: a process far away takes longer to resubscribe.
  local grace = math.max(o.graceMs, rec.grace or 0)
  -- Raised since its grant while its connections are being reset (src/lock/flap-grace.ts):
  -- its session key's value, read only here, when its channels are empty. At most a lease.
  if (rec.skey or '') ~= '' then
    local raised = tonumber(onThisNode('GET', rec.skey))
    if raised and raised > grace then grace = math.min(raised, o.leaseMs) end
  end
  -- An absence noted more than grace + 1 s ago proves nothing about now: a waiting twin asks
  -- again when the grace ends, so a real absence is taken over before then, and an older
  -- note means the channel may have been back in between (a reconnect nobody saw); counting
  -- from it would turn the next blip into an instant takeover. Count from now instead.
  if not rec.goneSince or now - rec.goneSince > grace + 1000 then
    rec.goneSince = now
    o.save()
  end
  if now - rec.goneSince >= grace then return false, recheck end
  return true, math.min(recheck, rec.goneSince + grace - now)
end

-- A record last written before this server's epoch began, and not refreshed since though its
-- epoch is warmupS old, is an orphan: a failover undid its settle (the replica had not
-- received it) while its owner lives on. A live run is refreshed as soon as its owner
-- reconnects (a heartbeat), so only a finished one stays behind. INFO is read only for
-- records this old (the common job never pays for it).
local function orphaned(rec, now, o)
  if not o.epochKey or now - (rec.updatedAt or now) < o.warmupS * 1000 then return false end
  local since = epochSince(o.epochKey, now, o.retentionMs)
  return (rec.updatedAt or 0) < since and now - since >= o.warmupS * 1000
end

-- Why a running record may be taken over from its owner ('expired' | 'disconnected'), or ''
-- while the owner holds it; and the ms after which asking again is worth it.
local function ownerStatus(rec, now, o)
  local leased, recheck, moved = ownerLeased(rec, now, o)
  if not leased then
    -- Its lease ran out and its liveness channel is empty too: its process is gone (a crash
    -- taken over after its short session key ran out), not cut off with its connections
    -- open. Told apart for the twin's `takeover` reason; both take it over.
    if not moved and (rec.live or '') ~= '' and liveSubscribers(rec.live, o.sharded) == 0 then
      return 'disconnected', recheck
    end
    return 'expired', recheck
  end
  -- Its channel is counted on its own node, not here: a count here would say 0.
  if moved then return '', recheck end
  local connected
  connected, recheck = ownerConnected(rec, now, o, recheck)
  if not connected then return 'disconnected', recheck end
  if orphaned(rec, now, o) then return 'expired', recheck end
  return '', recheck
end
