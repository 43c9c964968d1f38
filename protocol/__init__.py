"""The contract shared by the API (``app``) and the workers (``workers``); it imports neither.

- ``schema``: what crosses Redis and HTTP (request, resolved config, job record, result, model
  descriptions, heartbeats), pure pydantic, no torch;
- ``samplers``: the public description of each sampler and the knobs it honours;
- ``resolution``: from a request to the configuration that will run (pure, no I/O);
- ``keys``: every Redis key, stream field, hash field and flag value, spelled once;
- ``records``: how a job record is encoded in its hash (JSON per field), and ``CorruptJobRecord``;
- ``job_scripts``: the Lua scripts that move a job through its statuses, built from ``keys``.
"""
