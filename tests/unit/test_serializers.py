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


def test_every_rq_module_that_resolves_serializers_skips_the_check_for_ours():
    import sys

    import shared.serializers

    resolving = {name for name, module in sys.modules.items()
                 if name.startswith("rq.") and name != "rq.serializers" and hasattr(module, "resolve_serializer")}
    assert {"rq.job", "rq.queue", "rq.registry", "rq.results", "rq.worker.base"} <= resolving
    assert {name for name in resolving
            if sys.modules[name].resolve_serializer is not shared.serializers.resolve_serializer} == set()


def test_other_serializers_still_go_through_rq_s_check():
    from shared.serializers import resolve_serializer as ours

    assert ours(JobSerializer) is JobSerializer
    assert ours("json") is JSONSerializer
    with pytest.raises(NotImplementedError):
        ours(object())


def test_a_job_s_data_is_stored_as_plain_json_and_compressed_jobs_still_read():
    import zlib

    import redis
    import rq.job
    from rq.job import Job

    import shared.serializers

    assert rq.job.zlib is shared.serializers.PlainJobData
    connection = redis.Redis()  # never connects: nothing here talks to Redis
    job = Job.create("workers.jobs.execute", args=({"prompt": "héllo"},), serializer=JobSerializer, id="j",
                     connection=connection)
    stored = job.to_dict()["data"]
    assert JSONSerializer.loads(stored) == ["workers.jobs.execute", None, [{"prompt": "héllo"}], {}]
    for data in (stored, zlib.compress(stored)):  # ours, and a job stock RQ wrote
        read = Job(id="j", serializer=JobSerializer, connection=connection)
        read.restore({b"data": data, b"created_at": b"2026-12-06T12:00:00.000000Z"})
        assert list(read.args) == [{"prompt": "héllo"}]


@pytest.mark.parametrize("text", ["2026-12-06T12:22:19.217907Z", b"2026-12-06T12:22:19.217907Z",
                                  "2026-12-06T12:22:19Z", b"2026-12-06T00:00:00.000001Z"])
def test_job_timestamps_read_as_rq_reads_them(text):
    import rq.job
    from rq.utils import str_to_date as rq_str_to_date

    import shared.serializers

    assert rq.job.str_to_date is shared.serializers.str_to_date
    ours = shared.serializers.str_to_date(text)
    assert ours == rq_str_to_date(text) and ours.tzinfo is not None and ours.utcoffset().total_seconds() == 0


def test_a_timestamp_in_another_form_goes_to_rq_s_own_reader():
    import shared.serializers

    with pytest.raises(ValueError):
        shared.serializers.str_to_date("yesterday")  # RQ's own error, as before
