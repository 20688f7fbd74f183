--[[
  How many subscribers hold an owner's liveness (inlined by scripts/generate-lua.mjs).

  On one Redis a process holds its liveness channel on two connections: `live` on its
  subscriber (which also takes settle messages) and a backup channel on a second connection,
  named by replacing the last ':live:' with ':liveb:' (src/lock/keys.ts,
  backupLivenessChannel). A crash closes both at once; a connection reset, or several in a
  row, seldom both within one grace, so the owner is taken for dead only when neither is
  held. On a Cluster only `live` (sharded) is held.
]]
local function backupLivenessChannel(live)
  local at
  local from = 1
  while true do
    local found = string.find(live, ':live:', from, true)
    if not found then break end
    at = found
    from = found + 1
  end
  if not at then return nil end
  return string.sub(live, 1, at - 1) .. ':liveb:' .. string.sub(live, at + 6)
end

local function liveSubscribers(live, sharded)
  if sharded then return redis.call('PUBSUB', 'SHARDNUMSUB', live)[2] end
  local backup = backupLivenessChannel(live)
  if not backup then return redis.call('PUBSUB', 'NUMSUB', live)[2] end
  local counts = redis.call('PUBSUB', 'NUMSUB', live, backup)
  return counts[2] + counts[4]
end
