"""What one request costs Redis, counted on the real stack: at most 30 commands in 5
round trips for a plain non-streaming request with its identity cached and three rate
limits (the figures of docs/benchmarks.md, ``bench.gateway``'s ``redis_cost_per_request``).
A later feature that adds commands or round trips to every request fails here first.

The round trips: the API admits (one script) and waits for the answer (one read); the
worker takes the job (a move and a read of its hash) and ends it in one pipeline (its
answer, its settlement, its records: ``workers.job_end``).

Counted with ``INFO commandstats``, which counts every call a script or a transaction
makes. The count is of commands, not time; the stack's background work (heartbeats,
registry maintenance) is moved out of the way by the test knobs so that a slow machine
does not add to the figure, and what remains of it (a look at `rq suspend` and at the
live workers once a second) is small beside the bound.
"""

from __future__ import annotations

import pytest
import requests

from bench.gateway import BODY, CONFIG, commands_executed, redis_cost_per_request
from sandbox.gitlab import DEMO_TOKEN
from tests.harness import Stack

MAX_COMMANDS_PER_REQUEST = 30
# Five, and what the background work adds (a look at `rq suspend` and at the live workers
# once a second, the janitor's batched deletes): a sixth round trip on every request fails.
MAX_ROUND_TRIPS_PER_REQUEST = 5.5
REQUESTS = 200


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    with Stack(tmp_path_factory.mktemp("commands"), CONFIG.format(workers=1),
               env={"WORKER_HEARTBEAT_INTERVAL": "3600", "WORKER_MAINTENANCE_INTERVAL": "3600"}) as gateway:
        yield gateway


def test_a_plain_request_costs_redis_at_most_30_commands_in_5_round_trips(stack):
    cost = redis_cost_per_request(stack, count=REQUESTS)
    print(f"Redis per request: {cost.commands:.2f} commands, {cost.round_trips:.2f} round trips")
    assert cost.commands <= MAX_COMMANDS_PER_REQUEST
    assert cost.round_trips <= MAX_ROUND_TRIPS_PER_REQUEST


def test_a_refused_request_costs_redis_little(stack):
    """A request refused by its rate limit writes nothing and costs a handful of commands."""
    client = stack.redis()
    session = requests.Session()
    headers = {"Authorization": f"Bearer {DEMO_TOKEN}"}
    big = {**BODY, "max_tokens": 2_000_000_000}  # more than the model's tokens per minute: never admitted
    assert session.post(f"{stack.url}/v1/chat/completions", json=big, headers=headers, timeout=30).status_code == 429
    before = commands_executed(client)
    for _ in range(50):
        assert session.post(f"{stack.url}/v1/chat/completions", json=big, headers=headers,
                            timeout=30).status_code == 429
    per_request = (commands_executed(client) - before - 1) / 50
    print(f"Redis commands per refused request: {per_request:.2f}")
    assert per_request <= 20
