--[[
  This server's epoch (shared by acquire and heartbeat; inlined by scripts/generate-lua.mjs).
]]
-- Since when (ms) this server has been the one its clients talk to: its epoch. A restart, a
-- replica promoted by a failover, or another server behind the same address each start a new
-- one, and uptime alone sees only the first (a promoted replica may have been up for hours).
-- The epoch key names the server that wrote it (run_id, which is per process); replicated to
-- a replica, it names the old primary there, so a server that finds another run_id in it
-- starts a new epoch. INFO is read only here, when needed (it is not cheap). The key expires
-- with the records (retention after the last grant); absent, the epoch is the uptime.
local function epochSince(epochKey, now, retentionMs)
  local info = redis.call('INFO', 'server')
  local up = tonumber(string.match(info, 'uptime_in_seconds:(%d+)')) or 0
  local started = now - up * 1000
  if not epochKey then return started end
  local runId = string.match(info, 'run_id:(%w+)') or ''
  local stored = redis.call('HMGET', epochKey, 'runId', 'since')
  if stored[1] == runId and tonumber(stored[2]) then return tonumber(stored[2]) end
  -- Written by another server (this one was promoted, restarted, or replaced behind the
  -- address): when its clients came is unknown, at the latest now. Absent (a new store):
  -- since it started.
  local since = started
  if stored[1] then since = now end
  redis.call('HSET', epochKey, 'runId', runId, 'since', since)
  redis.call('PEXPIRE', epochKey, retentionMs)
  return since
end

