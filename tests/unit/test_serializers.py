"""RQ's job serializer: standard JSON both ways, readable by RQ's own JSONSerializer."""

from __future__ import annotations

import pytest
from rq.serializers import JSONSerializer, resolve_serializer

from shared.serializers import JobSerializer

PAYLOAD = ("workers.jobs.execute", None, ({"body": {"messages": [{"content": "héllo ✓", "n": 1.5}]}},), {})


def test_rq_accepts_it_as_a_serializer():
    assert resolve_serializer(JobSerializer) is JobSerializer


def test_what_it_writes_rq_s_json_serializer_reads_and_back():
    written = JobSerializer.dumps(PAYLOAD)
    assert isinstance(written, bytes)
    expected = ["workers.jobs.execute", None, [{"body": {"messages": [{"content": "héllo ✓", "n": 1.5}]}}], {}]
    assert JSONSerializer.loads(written) == expected  # rq info -S json, rq-dashboard -j
    assert JobSerializer.loads(JSONSerializer.dumps(PAYLOAD)) == expected


@pytest.mark.parametrize("text", [b'{"a": NaN}', b'{"a": 1', b'{"a": 1e999}'])
def test_what_is_not_standard_json_is_refused(text):
    with pytest.raises(ValueError):
        JobSerializer.loads(text)
