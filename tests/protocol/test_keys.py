"""Redis names are spelled once: the hash-field constants are the record's fields, and the Lua
scripts carry no field name or status of their own."""

from __future__ import annotations

import re
from pathlib import Path
from typing import get_args

from protocol import job_scripts, keys
from protocol.schema import TERMINAL_STATUSES, JobRecord, JobStatus

SCRIPTS_SOURCE = Path(job_scripts.__file__).read_text()


def test_every_hash_field_constant_is_a_job_record_field() -> None:
    # the fields of stream entries (a job stream's, a job-events stream's, the webhooks stream's)
    entry_fields = {keys.STREAM_JOB_FIELD, keys.JOB_EVENT_FIELD, *keys.WEBHOOK_ENTRY_FIELDS}
    fields = {value for name, value in vars(keys).items() if name.endswith("_FIELD")}
    assert fields - entry_fields - {keys.QUEUED_SET_FIELD} <= set(JobRecord.model_fields)
    assert keys.WEBHOOK_FIELD in JobRecord.model_fields  # the webhook entry copies the record's field


def test_the_scripts_spell_no_status_or_field_name_themselves() -> None:
    quoted = re.compile(r"""['"]\\?"?(\w+)\\?"?['"]""")
    spelled = set(quoted.findall(SCRIPTS_SOURCE))
    names = set(get_args(JobStatus)) | {v for n, v in vars(keys).items() if n.endswith("_FIELD")}
    assert spelled & names == set()


def test_the_scripts_compare_statuses_as_stored() -> None:
    assert '"\\"running\\""' in job_scripts.START  # the JSON encoding, as a Lua string


def test_terminal_statuses_are_statuses() -> None:
    assert set(TERMINAL_STATUSES) < set(get_args(JobStatus))
