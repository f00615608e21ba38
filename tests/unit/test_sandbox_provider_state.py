"""The sandbox provider's bounded memory (sandbox.provider_state): the call log's bodies and the stored responses."""

from __future__ import annotations

import json

from sandbox.provider_state import CallLog, ResponseStore


def entry(key: str, path: str = "/v1/chat/completions") -> dict:
    return {"key": key, "path": path}


def test_log_keeps_the_newest_entries_and_decodes_bodies():
    log = CallLog(size=3, body_limit=100, body_budget=1000)
    for i in range(5):
        log.append(entry(f"k{i}"), json.dumps({"n": i}).encode())
    assert [e["key"] for e in log.snapshot()] == ["k2", "k3", "k4"]
    assert [e["body"] for e in log.snapshot()] == [{"n": 2}, {"n": 3}, {"n": 4}]
    assert log.body_bytes == sum(len(json.dumps({"n": i})) for i in (2, 3, 4))
    log.append(entry("text", "/v1/embeddings"), b"not json \xff")
    assert log.snapshot(path="/v1/embeddings")[0]["body"] == "not json \ufffd"
    assert log.snapshot(key="k4")[0]["body_bytes"] == len(b'{"n": 4}')
    log.clear()
    assert log.snapshot() == [] and log.body_bytes == 0


def test_log_bodies_stay_within_their_limit_and_budget():
    log = CallLog(size=10, body_limit=50, body_budget=100)
    log.append(entry("big"), b"x" * 51)
    [big] = log.snapshot()
    assert big["body"] is None and big["body_bytes"] == 51  # over the limit: its size only
    for i in range(4):
        log.append(entry(f"k{i}"), b"%d" % i * 40)
    kept = {e["key"]: e["body"] for e in log.snapshot()}
    # 4 x 40 bytes do not fit 100: the oldest bodies gave way, every entry stays
    assert list(kept) == ["big", "k0", "k1", "k2", "k3"]
    assert kept["k0"] is None and kept["k1"] is None and kept["k2"] == int("2" * 40) and log.body_bytes == 80


def test_store_evicts_the_oldest_by_count_and_by_size():
    store = ResponseStore(count=2, max_bytes=10_000)
    for name in ("a", "b", "c"):
        store.put(name, {"response": {"id": name}, "context": []})
    assert store.get("a") is None and store.get("c") == {"response": {"id": "c"}, "context": []}
    assert store.delete("b") is True and store.delete("b") is False and store.get("b") is None
    small = ResponseStore(count=10, max_bytes=200)
    record = {"response": {}, "context": ["x" * 60]}
    for name in ("a", "b", "c"):
        small.put(name, record)
    assert small.get("a") is None and small.get("c") is not None and small.bytes <= 200
    small.put("huge", {"response": {}, "context": ["x" * 500]})  # never kept, and evicts nothing
    assert small.get("huge") is None and small.get("c") is not None
    small.put("c", record)  # storing an id again replaces it
    assert list(small.items) == ["b", "c"] and small.bytes == 2 * len(json.dumps(record, separators=(",", ":")))
    small.clear()
    assert small.bytes == 0 and small.get("c") is None
