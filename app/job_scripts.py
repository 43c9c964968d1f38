"""Lua scripts for job-state transitions, shared by the API and the workers.

Each runs atomically in Redis, so a job's status moves only forward and a finished job is
written exactly once, whichever process gets there first. Hash values are JSON (see
``app.contract.record_to_hash``), hence the quoted status strings.

Back-pressure needs the exact number of queued jobs per model (Redis 6.2's XINFO has no group
lag). SUBMIT adds the job to its model's queued set (``app.contract.queued_jobs_key``) and
stores that set's name in the job hash; every script that moves a job out of ``queued`` removes
it, through ``_LEAVE_QUEUE``. ZREM is idempotent, so a redelivered job cannot count twice.
"""

from __future__ import annotations

from app.contract import QUEUED_SET_FIELD

# Lua: drops the job of KEYS[1] from its model's queued set (jobs submitted before the set
# existed carry no field, and a field that is not JSON is ignored: neither may stop a transition).
_LEAVE_QUEUE = f"""
local queued_set = redis.call('HGET', KEYS[1], '{QUEUED_SET_FIELD}')
local decoded, name = pcall(cjson.decode, queued_set or '')
if decoded and type(name) == 'string' then
  redis.call('ZREM', name, KEYS[1])
end
"""

# KEYS[1] job hash, KEYS[2] the model's stream, KEYS[3] the model's queued set,
# KEYS[4] (optional) the idempotency key.
# ARGV[1] job id, ARGV[2] now (epoch s), ARGV[3] job ttl s, ARGV[4] cap on queued jobs,
# ARGV[5] idempotency ttl s, ARGV[6] request fingerprint, ARGV[7..] field, value, ...
# Returns {'created', job id, queued count}, {'replay', job id, {field, value, ...}},
# {'conflict', job id} (the key was used with another request) or {'full', queued count}.
# One atomic step: 50 concurrent requests with one key make one job, and a burst cannot pass
# the cap.
SUBMIT = f"""
if #KEYS == 4 then
  local previous = redis.call('GET', KEYS[4])
  if previous then
    previous = cjson.decode(previous)
    if redis.call('EXISTS', previous['job_key']) == 1 then
      if previous['fingerprint'] ~= ARGV[6] then
        return {{'conflict', previous['id']}}
      end
      return {{'replay', previous['id'], redis.call('HGETALL', previous['job_key'])}}
    end
  end
end
local now = tonumber(ARGV[2])
local job_ttl = tonumber(ARGV[3])
-- a job hash lives job_ttl seconds while unfinished: members older than that are gone jobs
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', '(' .. tostring(now - job_ttl))
local queued = redis.call('ZCARD', KEYS[3])
if queued >= tonumber(ARGV[4]) then
  return {{'full', queued}}
end
redis.call('HSET', KEYS[1], '{QUEUED_SET_FIELD}', cjson.encode(KEYS[3]), unpack(ARGV, 7))
redis.call('EXPIRE', KEYS[1], job_ttl)
redis.call('ZADD', KEYS[3], now, KEYS[1])
redis.call('XADD', KEYS[2], '*', 'job', ARGV[1])
if #KEYS == 4 then
  local entry = cjson.encode({{id = ARGV[1], job_key = KEYS[1], fingerprint = ARGV[6]}})
  redis.call('SET', KEYS[4], entry, 'EX', tonumber(ARGV[5]))
end
return {{'created', ARGV[1], queued + 1}}
"""

# KEYS[1] job hash. ARGV[1] ttl seconds, ARGV[2..] field, value, ...
# Returns 1 when written, 0 when the job was already finished (or is gone).
FINISH = f"""
local status = redis.call('HGET', KEYS[1], 'status')
if not status or status == '"succeeded"' or status == '"failed"' or status == '"cancelled"' then
  return 0
end
if status == '"queued"' then
  {_LEAVE_QUEUE}
end
redis.call('HSET', KEYS[1], unpack(ARGV, 2))
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[1]))
return 1
"""

# KEYS[1] job hash. ARGV[1] worker name (JSON), ARGV[2] started_at (JSON).
# Returns the new attempt count, or 0 when the job is finished or gone (skip it).
START = f"""
local status = redis.call('HGET', KEYS[1], 'status')
if status ~= '"queued"' and status ~= '"running"' then
  return 0
end
if status == '"queued"' then
  {_LEAVE_QUEUE}
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
CANCEL = f"""
local status = redis.call('HGET', KEYS[1], 'status')
if not status then
  return 'missing'
end
if status == '"queued"' then
  {_LEAVE_QUEUE}
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

# KEYS[1] the caller's bucket. ARGV[1] tokens added per second, ARGV[2] bucket size (burst).
# Returns {1, '0'} when a token was taken, else {0, seconds until one is available}. Redis's
# own clock, so that every API replica refills the same bucket at the same rate.
TAKE_TOKEN = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local bucket = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(bucket[1]) or burst
local at = tonumber(bucket[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - at) * rate)
local taken = 0
local wait = 0
if tokens >= 1 then
  tokens = tokens - 1
  taken = 1
else
  wait = (1 - tokens) / rate
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(now))
redis.call('EXPIRE', KEYS[1], math.ceil(burst / rate) + 1)
return {taken, tostring(wait)}
"""
