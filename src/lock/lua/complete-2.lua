--[[
  Complete: the running owner moves the record to 'done' and wakes waiting shadows.

  Input:
    KEYS[1] record key (key mode) or hash key (hash mode)
    KEYS[2] expiry index of the hash (hash mode; ignored in key mode)
    ARGV[1] field: the task id in hash mode, '' in key mode
    ARGV[2] token of the owner
    ARGV[3] fence of the owner
    ARGV[4] retention in ms
    ARGV[5] settle channel to publish on
    ARGV[6] result: a JSON string
    ARGV[7] the executor's last reported progress as JSON, '' when none: kept in the record so
            a shadow gets it with the result, without a read of its own

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
  'done', 'result', ARGV[6], false, ARGV[7])
