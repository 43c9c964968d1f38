"""Lua scripts for job-state transitions, shared by the API and the workers.

Each runs atomically in Redis, so a job's status moves only forward and a finished job is
written exactly once, whichever process gets there first. Hash values are JSON (see
``protocol.records``), hence statuses are compared with their JSON encoding. Every field name,
status and flag value is substituted from ``protocol.keys`` / ``protocol.schema``: nothing is
spelled here that the Python spells again.

Back-pressure needs the exact number of queued jobs per model (Redis 6.2's XINFO has no group
lag). SUBMIT adds the job to its model's queued set (``protocol.keys.queued_jobs_key``) and
stores that set's name in the job hash; every script that moves a job out of ``queued`` removes
it, through ``_LEAVE_QUEUE``. ZREM is idempotent, so a redelivered job cannot count twice.
"""

from __future__ import annotations

import json
from typing import get_args

from protocol.events import FINAL_EVENT_TYPES
from protocol.keys import (
    ATTEMPTS_FIELD,
    CANCEL_REQUESTED,
    CANCEL_REQUESTED_FIELD,
    FINISHED_AT_FIELD,
    JOB_EVENT_FIELD,
    QUEUED_SET_FIELD,
    STARTED_AT_FIELD,
    STATUS_FIELD,
    STREAM_JOB_FIELD,
    WEBHOOK_EVENT_ID_FIELD,
    WEBHOOK_FIELD,
    WEBHOOK_KIND_FIELD,
    WEBHOOK_SENT_AT,
    WEBHOOK_STARTED,
    WORKER_FIELD,
    CancelOutcome,
    SubmitOutcome,
)
from protocol.schema import CANCELLED, FAILED, QUEUED, RUNNING, SUCCEEDED, WebhookEventName, WebhookSettings


def _lua_string(value: str) -> str:
    """A Lua string literal (JSON's escaping is valid Lua for these ASCII values)."""
    return json.dumps(value)


def _json_value(status: str) -> str:
    """The Lua literal of a status as it is stored in the hash: its JSON encoding."""
    return _lua_string(json.dumps(status))


_REPLAY = _lua_string(SubmitOutcome.REPLAY)
_STATUS = _lua_string(STATUS_FIELD)
_QUEUED = _json_value(QUEUED)
_RUNNING = _json_value(RUNNING)
_SUCCEEDED = _json_value(SUCCEEDED)
_FAILED = _json_value(FAILED)
_CANCELLED = _json_value(CANCELLED)

# What the job TTL (``DENOISE_JOB_TTL_S``, read by the API and the workers) does: SUBMIT sets it on
# the new job hash, FINISH (a worker) and CANCEL of a queued job (the API) set it again, and SUBMIT
# counts a queued-set member older than it as gone. Both settings classes describe it with this.
JOB_TTL_DESCRIPTION = (
    "seconds a job record is kept after the job finishes (succeeded, failed or cancelled); also the "
    "longest an unfinished (queued or running) job's record is kept, counted from submission. "
    "Set the same value on the API and the workers"
)

# Lua: drops the job of KEYS[1] from its model's queued set (jobs submitted before the set
# existed carry no field, and a field that is not JSON is ignored: neither may stop a transition).
_LEAVE_QUEUE = f"""
local queued_set = redis.call('HGET', KEYS[1], {_lua_string(QUEUED_SET_FIELD)})
local decoded, name = pcall(cjson.decode, queued_set or '')
if decoded and type(name) == 'string' then
  redis.call('ZREM', name, KEYS[1])
end
"""

# KEYS[1] job hash, KEYS[2] the model's stream, KEYS[3] the model's queued set,
# KEYS[4] (optional) the idempotency key.
# ARGV[1] job id, ARGV[2] now (epoch s), ARGV[3] job ttl s, ARGV[4] cap on queued jobs,
# ARGV[5] idempotency ttl s, ARGV[6] request fingerprint, ARGV[7..] field, value, ...
# Returns {CREATED, job id, queued count}, {REPLAY, job id, {field, value, ...}}, {CONFLICT, job id}
# or {FULL, queued count} (``SubmitOutcome``).
# One atomic step: 50 concurrent requests with one key make one job, and a burst cannot pass
# the cap.
SUBMIT = f"""
if #KEYS == 4 then
  local previous = redis.call('GET', KEYS[4])
  if previous then
    previous = cjson.decode(previous)
    if redis.call('EXISTS', previous['job_key']) == 1 then
      if previous['fingerprint'] ~= ARGV[6] then
        return {{{_lua_string(SubmitOutcome.CONFLICT)}, previous['id']}}
      end
      return {{{_REPLAY}, previous['id'], redis.call('HGETALL', previous['job_key'])}}
    end
  end
end
local now = tonumber(ARGV[2])
local job_ttl = tonumber(ARGV[3])
-- a job hash lives job_ttl seconds while unfinished: members older than that are gone jobs
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', '(' .. tostring(now - job_ttl))
local queued = redis.call('ZCARD', KEYS[3])
if queued >= tonumber(ARGV[4]) then
  return {{{_lua_string(SubmitOutcome.FULL)}, queued}}
end
redis.call('HSET', KEYS[1], {_lua_string(QUEUED_SET_FIELD)}, cjson.encode(KEYS[3]), unpack(ARGV, 7))
redis.call('EXPIRE', KEYS[1], job_ttl)
redis.call('ZADD', KEYS[3], now, KEYS[1])
local entry_id = redis.call('XADD', KEYS[2], '*', {_lua_string(STREAM_JOB_FIELD)}, ARGV[1])
-- entries older than the TTL name jobs that have expired or finished (a job hash lives job_ttl
-- from submission while unfinished): trimmed, so the stream stays as long as the TTL window
local entry_ms = tonumber(string.match(entry_id, '^(%d+)'))
redis.call('XTRIM', KEYS[2], 'MINID', tostring(entry_ms - job_ttl * 1000))
if #KEYS == 4 then
  local entry = cjson.encode({{id = ARGV[1], job_key = KEYS[1], fingerprint = ARGV[6]}})
  redis.call('SET', KEYS[4], entry, 'EX', tonumber(ARGV[5]))
end
return {{{_lua_string(SubmitOutcome.CREATED)}, ARGV[1], queued + 1}}
"""

# KEYS[1] job hash. ARGV[1] ttl seconds, ARGV[2..] field, value, ...
# Returns 1 when written, 0 when the job was already finished (or is gone).
FINISH = f"""
local status = redis.call('HGET', KEYS[1], {_STATUS})
if not status or status == {_SUCCEEDED} or status == {_FAILED} or status == {_CANCELLED} then
  return 0
end
if status == {_QUEUED} then
  {_LEAVE_QUEUE}
end
redis.call('HSET', KEYS[1], unpack(ARGV, 2))
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[1]))
return 1
"""

# KEYS[1] job hash. ARGV[1] worker name (JSON), ARGV[2] started_at (JSON).
# Returns the new attempt count, or 0 when the job is finished or gone (skip it).
START = f"""
local status = redis.call('HGET', KEYS[1], {_STATUS})
if status ~= {_QUEUED} and status ~= {_RUNNING} then
  return 0
end
if status == {_QUEUED} then
  {_LEAVE_QUEUE}
end
local attempts = tonumber(redis.call('HGET', KEYS[1], {_lua_string(ATTEMPTS_FIELD)}) or '0') + 1
redis.call('HSET', KEYS[1], {_STATUS}, {_RUNNING}, {_lua_string(WORKER_FIELD)}, ARGV[1],
           {_lua_string(STARTED_AT_FIELD)}, ARGV[2], {_lua_string(ATTEMPTS_FIELD)}, tostring(attempts))
return attempts
"""

# KEYS[1] job hash. ARGV[1] ttl seconds, ARGV[2] finished_at (JSON).
# A queued job is cancelled at once; a running one is flagged for its worker, which stops it
# within one step. Returns a ``CancelOutcome``; ALREADY is followed by ':' and the final
# status (JSON) when the job had finished before.
CANCEL = f"""
local status = redis.call('HGET', KEYS[1], {_STATUS})
if not status then
  return {_lua_string(CancelOutcome.MISSING)}
end
if status == {_QUEUED} then
  {_LEAVE_QUEUE}
  redis.call('HSET', KEYS[1], {_STATUS}, {_CANCELLED}, {_lua_string(FINISHED_AT_FIELD)}, ARGV[2])
  redis.call('EXPIRE', KEYS[1], tonumber(ARGV[1]))
  return {_lua_string(CancelOutcome.CANCELLED)}
end
if status == {_RUNNING} then
  redis.call('HSET', KEYS[1], {_lua_string(CANCEL_REQUESTED_FIELD)}, {_lua_string(CANCEL_REQUESTED)})
  return {_lua_string(CancelOutcome.CANCELLING)}
end
return {_lua_string(CancelOutcome.ALREADY + ":")} .. status
"""


# the webhook event names, in the Literal's order (start, progress, completed)
_START, _PROGRESS, _COMPLETED = (_lua_string(name) for name in get_args(WebhookEventName))
_FINAL_EVENT = " or ".join(f"ARGV[4] == {_lua_string(kind)}" for kind in sorted(FINAL_EVENT_TYPES))
_EVENTS = _lua_string("events")
_INTERVAL = _lua_string("progress_interval_s")
assert {"events", "progress_interval_s"} <= set(WebhookSettings.model_fields)
# undelivered requests kept if no dispatcher runs (a dispatcher deletes those it has handled)
WEBHOOKS_STREAM_MAXLEN = 100_000

# KEYS[1] a job's events stream, KEYS[2] its job hash, KEYS[3] the webhooks stream, KEYS[4] the job's
# webhook state hash (``protocol.events.append_event_call``). ARGV[1] the JobEvent JSON, ARGV[2] ttl
# seconds (the job record's), ARGV[3] the most entries kept, ARGV[4] the event's type, ARGV[5] its
# time (epoch s). Returns the entry id (the SSE event id).
# When the job has a webhook that wants the event (its first running event is a start, a later one
# a progress, at most one per progress_interval_s counted from the last start or progress, a final
# one a completed), a delivery request goes to the webhooks stream in the same atomic step, so the
# request exists exactly when the event does.
APPEND_EVENT = f"""
local id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[3], '*', {_lua_string(JOB_EVENT_FIELD)}, ARGV[1])
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[2]))
local running = ARGV[4] == {_lua_string(RUNNING)}
if not running and not ({_FINAL_EVENT}) then
  return id
end
local raw = redis.call('HGET', KEYS[2], {_lua_string(WEBHOOK_FIELD)})
local decoded, webhook = pcall(cjson.decode, raw or '')
if not decoded or type(webhook) ~= 'table' or type(webhook[{_EVENTS}]) ~= 'table' then
  return id
end
local kind = {_COMPLETED}
if running then
  kind = {_PROGRESS}
  if redis.call('HSETNX', KEYS[4], {_lua_string(WEBHOOK_STARTED)}, '1') == 1 then
    kind = {_START}
  end
  redis.call('EXPIRE', KEYS[4], tonumber(ARGV[2]))
end
local wanted = false
for _, name in ipairs(webhook[{_EVENTS}]) do
  if name == kind then wanted = true end
end
if not wanted then
  return id
end
if kind == {_PROGRESS} then
  local sent_at = tonumber(redis.call('HGET', KEYS[4], {_lua_string(WEBHOOK_SENT_AT)}) or '')
  if sent_at and tonumber(ARGV[5]) - sent_at < (tonumber(webhook[{_INTERVAL}]) or 0) then
    return id
  end
end
if running then
  redis.call('HSET', KEYS[4], {_lua_string(WEBHOOK_SENT_AT)}, ARGV[5])
end
redis.call('XADD', KEYS[3], 'MAXLEN', '~', {WEBHOOKS_STREAM_MAXLEN}, '*',
           {_lua_string(WEBHOOK_KIND_FIELD)}, kind, {_lua_string(WEBHOOK_EVENT_ID_FIELD)}, id,
           {_lua_string(JOB_EVENT_FIELD)}, ARGV[1], {_lua_string(WEBHOOK_FIELD)}, raw)
return id
"""


# KEYS[1] the webhook retry schedule (``protocol.keys.WEBHOOK_RETRIES_KEY``). ARGV[1] now (epoch s),
# ARGV[2] the end of the claim's lease (epoch s), ARGV[3] the most members to claim.
# Returns the members due by now, each re-scored to the lease's end: the claiming replica removes
# or reschedules it after its attempt, and if that replica dies, the member is due again then.
CLAIM_DUE_WEBHOOKS = """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[3]))
for _, member in ipairs(due) do
  redis.call('ZADD', KEYS[1], 'XX', ARGV[2], member)
end
return due
"""
