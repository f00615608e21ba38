"""The RQ patches (shared.plumbing.rq_patches), checked against the installed RQ: each test
fails if an upgrade changes what a patch relies on."""

from __future__ import annotations

import importlib
import inspect
import subprocess
import sys
import zlib

import pytest
import redis
import rq.job
import rq.serializers
import rq.utils
import rq.worker  # with rq.job: every module that resolves a serializer on the request's path
from rq.job import Job
from rq.serializers import JSONSerializer

from shared.plumbing import rq_patches
from shared.serializers import JobSerializer


@pytest.fixture
def installed(monkeypatch):
    """The patches installed for one test, and RQ as it was afterwards."""
    for name in rq_patches.SERIALIZER_RESOLVING_MODULES:
        module = importlib.import_module(name)
        monkeypatch.setattr(module, "resolve_serializer", module.resolve_serializer)
    monkeypatch.setattr(rq.job, "zlib", rq.job.zlib)
    monkeypatch.setattr(rq.job, "str_to_date", rq.job.str_to_date)
    rq_patches.install()


def test_the_modules_it_patches_resolve_serializers_with_rq_s_own_function():
    for name in rq_patches.SERIALIZER_RESOLVING_MODULES:
        assert importlib.import_module(name).resolve_serializer is rq.serializers.resolve_serializer, name


def test_no_other_rq_module_on_the_request_s_path_resolves_serializers():
    # An upgrade that adds one would leave RQ's check on the path unnoticed. A fresh interpreter:
    # what this one has imported depends on the tests that ran before.
    listed = subprocess.run([sys.executable, "-c", (
        "import sys, rq.job, rq.queue, rq.worker\n"
        "from rq.serializers import resolve_serializer as rq_s\n"
        "print(' '.join(sorted(n for n, m in list(sys.modules.items()) if n.startswith('rq.')"
        " and n != 'rq.serializers' and getattr(m, 'resolve_serializer', None) is rq_s)))")],
        capture_output=True, text=True, timeout=60, check=True)
    resolving = set(listed.stdout.split())
    assert resolving - {"rq.scheduler"} == set(rq_patches.SERIALIZER_RESOLVING_MODULES)  # no scheduler runs


def test_rq_job_compresses_and_reads_dates_through_the_names_it_replaces():
    assert rq.job.zlib is zlib and rq.job.str_to_date is rq.utils.str_to_date
    source = inspect.getsource(Job)
    assert "zlib.compress(self.data)" in source and "zlib.decompress(raw_data)" in source
    assert "except zlib.error:" in source and "str_to_date(" in source


def test_install_replaces_them_all_and_may_be_called_again(installed):
    rq_patches.install()
    for name in rq_patches.SERIALIZER_RESOLVING_MODULES:
        assert importlib.import_module(name).resolve_serializer is rq_patches.resolve_serializer
    assert rq.job.zlib is rq_patches.JobDataAsWritten and rq.job.str_to_date is rq_patches.str_to_date


def test_other_serializers_still_go_through_rq_s_check():
    assert rq_patches.resolve_serializer(JobSerializer) is JobSerializer
    assert rq_patches.resolve_serializer("json") is JSONSerializer
    with pytest.raises(NotImplementedError):
        rq_patches.resolve_serializer(object())


def test_a_job_s_data_is_stored_as_plain_json_and_compressed_jobs_still_read(installed):
    connection = redis.Redis()  # never connects: nothing here talks to Redis
    job = Job.create("workers.jobs.execute", args=({"prompt": "héllo"},), serializer=JobSerializer, id="j",
                     connection=connection)
    stored = job.to_dict()["data"]
    assert JSONSerializer.loads(stored) == ["workers.jobs.execute", None, [{"prompt": "héllo"}], {}]
    for data in (stored, zlib.compress(stored)):  # ours, and a job stock RQ wrote
        read = Job(id="j", serializer=JobSerializer, connection=connection)
        read.restore({b"data": data, b"created_at": b"2026-12-06T12:00:00.000000Z"})
        assert list(read.args) == [{"prompt": "héllo"}]


def test_stock_rq_reads_a_job_stored_as_written(installed):
    connection = redis.Redis()
    stored = Job.create("workers.jobs.execute", args=({"prompt": "x"},), serializer=JobSerializer, id="j",
                        connection=connection).to_dict()["data"]
    rq.job.zlib = zlib  # a process without the patch: rq info, rq-dashboard
    read = Job(id="j", serializer=JSONSerializer, connection=connection)
    read.restore({b"data": stored, b"created_at": b"2026-12-06T12:00:00.000000Z"})
    assert list(read.args) == [{"prompt": "x"}]


@pytest.mark.parametrize("text", ["2026-12-06T12:22:19.217907Z", b"2026-12-06T12:22:19.217907Z",
                                  "2026-12-06T12:22:19Z", b"2026-12-06T00:00:00.000001Z"])
def test_job_timestamps_read_as_rq_reads_them(text):
    ours = rq_patches.str_to_date(text)
    assert ours == rq.utils.str_to_date(text) and ours.tzinfo is not None and ours.utcoffset().total_seconds() == 0


def test_a_timestamp_written_by_rq_reads_back_through_the_patch(installed):
    job = Job.create("workers.jobs.execute", serializer=JobSerializer, id="j", connection=redis.Redis())
    read = Job(id="j", serializer=JobSerializer, connection=job.connection)
    read.restore(job.to_dict())
    assert read.created_at == job.created_at and read.created_at.tzinfo is not None


def test_a_timestamp_in_another_form_goes_to_rq_s_own_reader():
    with pytest.raises(ValueError):
        rq_patches.str_to_date("yesterday")  # RQ's own error, as before
