"""How a job record lives in its Redis hash: one field per ``JobRecord`` field, each a JSON
value. Both sides read and write it only through these functions, so the encoding is defined
once; anything that does not decode is a ``CorruptJobRecord``, never decoded some other way.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from protocol.schema import JobRecord


class CorruptJobRecord(ValueError):
    """A job hash that exists but is not the JSON job record of the contract."""


def record_to_hash(record: JobRecord) -> dict[str, str]:
    """A job record as Redis hash fields: one JSON value per field."""
    return {name: json.dumps(value) for name, value in record.model_dump(mode="json").items()}


def hash_fields(values: Mapping[str, object]) -> dict[str, str]:
    """Partial update of a job hash (field names from ``protocol.keys``), encoded like
    ``record_to_hash``."""
    return {name: json.dumps(value) for name, value in values.items()}


def record_from_hash(job_id: str, fields: Mapping[str | bytes, str | bytes]) -> JobRecord:
    """Decodes a job hash.

    Raises:
        CorruptJobRecord: a field is not JSON, or the record is not a valid ``JobRecord``.
    """
    try:
        decoded = {(k.decode() if isinstance(k, bytes) else k): json.loads(v) for k, v in fields.items()}
        return JobRecord.model_validate(decoded)
    except ValueError as error:  # JSONDecodeError and pydantic's ValidationError alike
        raise CorruptJobRecord(
            f"job {job_id}: the record is not a valid job record (JSON of the contract): {error}"
        ) from error


def decode_status(job_id: str, value: str) -> str:
    """A status as the scripts return it (its JSON encoding), decoded."""
    try:
        return str(json.loads(value))
    except ValueError as error:
        raise CorruptJobRecord(f"job {job_id}: its status is not valid JSON") from error
