"""What a Redis holds, by kind of key: how many, their bytes (``MEMORY USAGE``), and how many
never expire, so that the soak can check Redis's memory against the TTL arithmetic.

Every per-job key (the record, its events stream, its idempotency entry, its webhook state) must
carry a TTL: a key of those kinds without one is a leak that only a long run shows. The kinds are
the second component of the key names of ``protocol.keys`` (``denoise:job:<id>`` -> ``job``).

    python -m bench.redis_census redis://127.0.0.1:6379/0
"""

from __future__ import annotations

import sys
from collections import defaultdict
from dataclasses import asdict, dataclass
from typing import Any

import redis

from protocol.keys import KEY_PREFIX

# kinds of key that exist once per job or per request, and so must expire
PER_JOB_KINDS = ("job", "job-events", "idempotency", "webhook-state", "ratelimit")


@dataclass
class KindTally:
    keys: int = 0
    bytes: int = 0
    without_ttl: int = 0


def kind_of(key: str) -> str:
    """``denoise:job:abc`` -> ``job``; keys outside the service's prefix -> ``(other)``."""
    parts = key.split(":")
    if len(parts) < 2 or parts[0] != KEY_PREFIX:
        return "(other)"
    return parts[1]


def census(client: redis.Redis) -> dict[str, Any]:
    """Keys, bytes and non-expiring keys by kind, Redis's ``used_memory``, and the per-job kinds'
    keys that never expire (must be 0)."""
    kinds: dict[str, KindTally] = defaultdict(KindTally)
    for raw in client.scan_iter(count=1000):
        key = raw.decode() if isinstance(raw, bytes) else str(raw)
        tally = kinds[kind_of(key)]
        tally.keys += 1
        tally.bytes += int(client.memory_usage(key, samples=0) or 0)
        if client.ttl(key) == -1:
            tally.without_ttl += 1
    info = client.info("memory")
    return {
        "used_memory_bytes": int(info["used_memory"]),
        "by_kind": {kind: asdict(tally) for kind, tally in sorted(kinds.items())},
        "per_job_keys_without_ttl": sum(kinds[k].without_ttl for k in PER_JOB_KINDS if k in kinds),
    }


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    report = census(redis.Redis.from_url(args[0] if args else "redis://127.0.0.1:6379/0"))
    print(f"used_memory {report['used_memory_bytes'] / 2**20:.1f} MB")
    for kind, tally in report["by_kind"].items():
        megabytes = tally["bytes"] / 2**20
        print(f"  {kind:<16} {tally['keys']:>8} keys {megabytes:8.2f} MB  {tally['without_ttl']} no TTL")
    return 0 if report["per_job_keys_without_ttl"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
