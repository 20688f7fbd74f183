--[[
  Whether the executors some shadows wait for look alive: for each, the subscriber count of
  its liveness channels (includes/liveness) and the lease left on its session key. One call per node for all the
  owners placed there (a shadow's watch, and a process's watch of its siblings).

  Input:
    KEYS[1] any key on the node to ask (on a Cluster, one of the session keys below: the
            client routes the call by it; every key and channel given shares its hash tag)
    ARGV[1] '1': the channels are sharded (Cluster: SHARDNUMSUB), else NUMSUB
    ARGV[2] n: how many owners follow
    ARGV[3 .. 2+n]       their liveness channels ('' when unknown)
    ARGV[3+n .. 2+2n]    their session keys ('' when unknown)

  Output (no code): {subscribers..., sessionLeftMs...}, n each: -1 for an unknown channel,
  NOT_UNDER_SESSION for an unknown session key, a key's PTTL (-2: gone) otherwise.
]]
--- @include "replies"
--- @include "includes/record"
--- @include "includes/liveness"

local sharded = ARGV[1] == '1'
local n = tonumber(ARGV[2])
local out = {}
for i = 1, n do
  local channel = ARGV[2 + i]
  if channel == '' then
    out[i] = -1
  else
    out[i] = liveSubscribers(channel, sharded)
  end
  local skey = ARGV[2 + n + i]
  if skey == '' then
    out[n + i] = REPLY.NOT_UNDER_SESSION
  else
    out[n + i] = onThisNode('PTTL', skey) or REPLY.NOT_UNDER_SESSION
  end
end
return out
