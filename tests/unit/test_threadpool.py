"""The thread pool of gunicorn's request threads and the worker's job threads: last idle thread first."""

from __future__ import annotations

import threading
from pathlib import Path
from types import SimpleNamespace

import pytest

from api.web_worker import GatewayThreadWorker
from shared.plumbing.threadpool import LifoThreadPool
from tests.harness import wait_for


@pytest.fixture
def pool():
    made = LifoThreadPool(4, name="test", idle_seconds=30)
    yield made
    made.shutdown(wait=False)


def current_thread_name() -> str:
    return threading.current_thread().name


def test_the_thread_that_went_idle_last_takes_the_next_task(pool):
    release = threading.Event()
    first = pool.submit(release.wait, 10)
    second = pool.submit(current_thread_name)
    second_thread = second.result(timeout=10)
    release.set()
    first.result(timeout=10)
    wait_for(lambda: pool.idle == 2, timeout=10, message="both threads idle")
    # The first task's thread went idle after the second's: it takes the next task.
    assert pool.submit(current_thread_name).result(timeout=10) != second_thread
    assert pool.submit(current_thread_name).result(timeout=10) != second_thread
    assert pool._threads == 2  # reused, none started


def test_work_beyond_the_threads_waits_and_runs_in_order(pool):
    release = threading.Event()
    busy = [pool.submit(release.wait, 10) for _ in range(4)]
    order: list[int] = []
    waiting = [pool.submit(order.append, index) for index in range(5)]
    assert not any(future.done() for future in waiting)
    release.set()
    for future in busy + waiting:
        future.result(timeout=10)
    assert sorted(order) == list(range(5)) and pool._threads == 4


def test_results_errors_and_done_callbacks_reach_the_future(pool):
    answered = pool.submit(lambda a, b: a + b, 2, 3)
    assert answered.result(timeout=10) == 5
    failed = pool.submit(lambda: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        failed.result(timeout=10)
    called = threading.Event()
    pool.submit(lambda: None).add_done_callback(lambda future: called.set())
    assert called.wait(10)


def test_shutdown_ends_idle_threads_and_refuses_new_work(pool):
    pool.submit(lambda: None).result(timeout=10)
    wait_for(lambda: pool.idle == 1, timeout=10, message="the thread idle")
    thread = next(t for t in threading.enumerate() if t.name.startswith("test-"))
    pool.shutdown(wait=False)
    thread.join(10)
    assert not thread.is_alive()
    with pytest.raises(RuntimeError):
        pool.submit(lambda: None)


def test_gunicorn_runs_it_with_its_configured_threads():
    source = (Path(__file__).resolve().parents[2] / "config" / "gunicorn.conf.py").read_text()
    assert 'worker_class = "api.web_worker.GatewayThreadWorker"' in source
    made = GatewayThreadWorker.get_thread_pool(SimpleNamespace(cfg=SimpleNamespace(threads=3)))
    assert isinstance(made, LifoThreadPool) and made.max_workers == 3


def test_a_thread_idle_past_its_time_ends_and_a_new_one_starts_when_needed():
    pool = LifoThreadPool(name="short", idle_seconds=0.05)
    first = pool.submit(current_thread_name).result(timeout=10)
    wait_for(lambda: pool._threads == 0, timeout=10, message="the idle thread ended")
    assert pool.idle == 0
    assert pool.submit(current_thread_name).result(timeout=10) != first
    pool.shutdown(wait=False)


def test_without_a_limit_busy_threads_never_hold_work_back():
    pool = LifoThreadPool(name="open")
    release = threading.Event()
    busy = [pool.submit(release.wait, 10) for _ in range(20)]
    assert pool.submit(lambda: "ran").result(timeout=10) == "ran"
    release.set()
    for future in busy:
        future.result(timeout=10)
    pool.shutdown(wait=False)
