--[[
  Whether the owner of a running record still holds it (acquire's question about another
  member's record; inlined by scripts/generate-lua.mjs).

  The owner holds it while its lease lasts (its process's session key, else the record's own
  leaseUntil), its process's liveness channel has a subscriber (or has been empty for less
  than the grace), and the record is no orphan of a failover. After a restart or a failover
  an absence proves nothing until the server's epoch is past its warm-up.

  `o` carries what the caller was given:
    o.epochKey     the epoch key, nil on a Cluster
    o.retentionMs  retention of the records (and of the epoch key)
    o.warmupS      liveness warm-up in seconds after a restart or a failover
    o.graceMs      how long the owner's channel must stay empty before it counts as gone
    o.save()       writes `rec` back (it stamps rec.updatedAt): called when rec.goneSince
                   changes, before the orphan check reads rec.updatedAt
]]
--- @include "includes/epoch"

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

-- Whether the owner's lease lasts, and the ms until it may end (worth asking again then).
local function ownerLeased(rec, now, o)
  local skey = rec.skey or ''
  if skey == '' then
    return rec.leaseUntil > now, rec.leaseUntil - now
  end
  local left = redis.call('PTTL', skey)
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
  local subscribers = redis.call('PUBSUB', 'NUMSUB', live)[2]
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
  local leased, recheck = ownerLeased(rec, now, o)
  if not leased then return 'expired', recheck end
  local connected
  connected, recheck = ownerConnected(rec, now, o, recheck)
  if not connected then return 'disconnected', recheck end
  if orphaned(rec, now, o) then return 'expired', recheck end
  return '', recheck
end
