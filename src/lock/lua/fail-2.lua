--[[
  Fail: the running owner moves the record to 'failed' and wakes waiting shadows.

  Input:
    KEYS[1] record key (key mode) or hash key (hash mode)
    KEYS[2] expiry index of the hash (hash mode; ignored in key mode)
    ARGV[1] field: the task id in hash mode, '' in key mode
    ARGV[2] token of the owner
    ARGV[3] fence of the owner
    ARGV[4] retention in ms
    ARGV[5] settle channel to publish on
    ARGV[6] error: a JSON string
    ARGV[7] '1' when the failure is final: the routine succeeded but its result cannot be
            stored, so no member may run the task again, whatever its peer-failure policy

  Output (codes and field layouts: replies.json):
    {OK, fence}                   settled
    {STALE, state, fence, owner}  refused: the caller is not the current owner (stale fence)
    {MISSING}                     the record is gone (retention passed)
    {CORRUPT}                     the record is unreadable
]]
--- @include "replies"
--- @include "includes/record"
--- @include "includes/settle"

return settle(KEYS[1], KEYS[2], ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4]), ARGV[5],
  'failed', 'error', ARGV[6], ARGV[7] == '1')
