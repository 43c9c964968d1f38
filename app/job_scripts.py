"""Lua scripts for job-state transitions, shared by the API and the workers.

Each runs atomically in Redis, so a job's status moves only forward and a finished job is
written exactly once, whichever process gets there first. Hash values are JSON (see
``app.contract.record_to_hash``), hence the quoted status strings.
"""

from __future__ import annotations

# KEYS[1] job hash. ARGV[1] ttl seconds, ARGV[2..] field, value, ...
# Returns 1 when written, 0 when the job was already finished (or is gone).
FINISH = """
local status = redis.call('HGET', KEYS[1], 'status')
if not status or status == '"succeeded"' or status == '"failed"' or status == '"cancelled"' then
  return 0
end
redis.call('HSET', KEYS[1], unpack(ARGV, 2))
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[1]))
return 1
"""

# KEYS[1] job hash. ARGV[1] worker name (JSON), ARGV[2] started_at (JSON).
# Returns the new attempt count, or 0 when the job is finished or gone (skip it).
START = """
local status = redis.call('HGET', KEYS[1], 'status')
if status ~= '"queued"' and status ~= '"running"' then
  return 0
end
local attempts = tonumber(redis.call('HGET', KEYS[1], 'attempts') or '0') + 1
redis.call('HSET', KEYS[1], 'status', '"running"', 'worker', ARGV[1], 'started_at', ARGV[2],
           'attempts', tostring(attempts))
return attempts
"""

# KEYS[1] job hash. ARGV[1] ttl seconds, ARGV[2] finished_at (JSON).
# A queued job is cancelled at once; a running one is flagged for its worker, which stops it
# within one step. Returns 'cancelled', 'cancelling', 'missing', or 'already:' + the final
# status (JSON) when the job had finished before.
CANCEL = """
local status = redis.call('HGET', KEYS[1], 'status')
if not status then
  return 'missing'
end
if status == '"queued"' then
  redis.call('HSET', KEYS[1], 'status', '"cancelled"', 'finished_at', ARGV[2])
  redis.call('EXPIRE', KEYS[1], tonumber(ARGV[1]))
  return 'cancelled'
end
if status == '"running"' then
  redis.call('HSET', KEYS[1], 'cancel_requested', 'true')
  return 'cancelling'
end
return 'already:' .. status
"""
