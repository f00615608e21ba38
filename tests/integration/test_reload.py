"""SIGHUP reloads the configuration file in the web processes (gunicorn's master runs its config
file again and replaces its workers gracefully) and in the workers' supervisor, while requests are
in flight: a valid file adds, changes and removes models without dropping one; an invalid file is
refused, the configuration in force kept, the reasons logged, and gunicorn's master lives on."""

from __future__ import annotations

import json
import signal

import pytest

from tests.harness import Stack, in_background, wait_for

MODEL = """
  - name: {name}
    type: generic
    base_url: "{{sandbox}}/v1"
    api_key: "${{SANDBOX_PROVIDER_KEY}}"
    timeout: {timeout}
    workers: 1
    concurrency: {concurrency}
"""
BEFORE = "models:" + MODEL.format(name="kept", timeout="20s", concurrency=4) + MODEL.format(
    name="dropped", timeout="20s", concurrency=1)
# kept's timeout changes (its processes are replaced warmly), dropped goes, added comes.
AFTER = "models:" + MODEL.format(name="kept", timeout="25s", concurrency=4) + MODEL.format(
    name="added", timeout="20s", concurrency=4)
# Only added's process count changes.
RESIZED = "models:" + MODEL.format(name="kept", timeout="25s", concurrency=4) + MODEL.format(
    name="added", timeout="20s", concurrency=4).replace("workers: 1", "workers: 2")
INVALID = """
models:
  - name: kept
    type: gemini
    base_url: "{sandbox}/v1"
"""
STREAM = "[[sandbox words=30 chunk_delay_ms=100]] a stream across the reload"


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    with Stack(tmp_path_factory.mktemp("reload"), BEFORE, web_workers=2) as gateway:
        yield gateway


def write_config(stack: Stack, text: str) -> None:
    (stack.dir / "config.yaml").write_text(text.replace("{sandbox}", stack.sandbox_url))


def reload(stack: Stack) -> None:
    stack.web.signal(signal.SIGHUP)  # gunicorn's master
    stack.workers.signal(signal.SIGHUP)  # the workers' supervisor


def records(process, message: str) -> list[dict]:
    lines = [json.loads(line) for line in process.log().splitlines() if line.startswith("{")]
    return [line for line in lines if line.get("message", "").startswith(message)]


def whole_stream(response) -> bool:
    return response.status_code == 200 and response.text.rstrip().endswith("data: [DONE]")


def status_of(stack: Stack, model: str) -> int:
    return stack.chat(model, "after the reload", timeout=30).status_code


def test_a_valid_file_adds_changes_and_removes_models_without_dropping_a_request(stack):
    master = stack.web.pid
    results: dict = {}
    threads = [in_background(stack, results, "reload-stream", "kept", STREAM, stream=True),
               in_background(stack, results, "reload-running", "dropped", "[[sandbox delay_ms=3000]] running")]
    wait_for(lambda: stack.sandbox_calls("reload-stream") and stack.sandbox_calls("reload-running"), timeout=10,
             message="both requests at the provider")
    threads.append(in_background(stack, results, "reload-queued", "dropped", "queued behind it"))
    wait_for(lambda: stack.redis().llen("rq:queue:dropped") == 1, timeout=10, message="a job waiting on dropped")
    write_config(stack, AFTER)
    reload(stack)
    for thread in threads:
        thread.join(60)
    assert whole_stream(results["reload-stream"]), results["reload-stream"].text[-300:]
    assert results["reload-running"].status_code == 200  # the removed model's running job...
    assert results["reload-queued"].status_code == 200  # ...and its queued one are answered
    wait_for(lambda: status_of(stack, "added") == 200, timeout=30, message="the added model served")
    wait_for(lambda: status_of(stack, "dropped") == 404, timeout=30, message="the removed model refused")
    assert stack.chat("dropped", "gone?").json()["error"]["code"] == "model_not_found"
    assert status_of(stack, "kept") == 200
    wait_for(lambda: stack.redis().exists(*stack.redis().smembers("rq:workers:dropped") or ["-"]) == 0,
             timeout=30, message="the removed model's worker gone")
    (web,) = records(stack.web, "configuration reloaded")
    assert (web["added"], web["removed"]) == (["added"], ["dropped"])
    (workers,) = records(stack.workers, "configuration reloaded")
    assert (workers["added"], workers["removed"], workers["restarted"]) == (["added"], ["dropped"], ["kept"])
    assert stack.web.popen.poll() is None and stack.web.pid == master


def test_an_invalid_file_is_refused_and_the_configuration_in_force_kept(stack):
    results: dict = {}
    thread = in_background(stack, results, "refused-stream", "kept", STREAM, stream=True)
    wait_for(lambda: stack.sandbox_calls("refused-stream"), timeout=10, message="the stream at the provider")
    write_config(stack, INVALID)
    reload(stack)
    problem = "models[0].type: must be one of openai, anthropic, vertex, generic"
    for process in (stack.web, stack.workers):
        found = wait_for(lambda process=process: records(process, "configuration reload refused"), timeout=20,
                         message=f"{process.name}'s refusal logged")
        assert problem in found[0]["problems"]
    thread.join(60)
    assert whole_stream(results["refused-stream"])
    assert stack.web.popen.poll() is None and stack.workers.popen.poll() is None  # both live on
    # gunicorn replaced its workers all the same: the new ones serve what the master accepted last.
    wait_for(lambda: stack.web.log().count("api process ready") >= 2 * 3, timeout=30,
             message="the web workers forked after the refused reload")
    for model in ("kept", "added"):
        assert status_of(stack, model) == 200
    assert "Traceback" not in stack.web.log()
    write_config(stack, AFTER)


def live_workers(stack: Stack, model: str) -> int:
    client = stack.redis()
    names = client.smembers(f"rq:workers:{model}")
    return client.exists(*names) if names else 0


def test_a_changed_process_count_adds_or_stops_processes_only(stack):
    wait_for(lambda: live_workers(stack, "added") == 1, timeout=30, message="one worker of added")
    kept = stack.redis().smembers("rq:workers:kept")
    write_config(stack, RESIZED)
    stack.workers.signal(signal.SIGHUP)
    wait_for(lambda: live_workers(stack, "added") == 2, timeout=30, message="a second worker of added")
    last = records(stack.workers, "configuration reloaded")[-1]
    assert (last["resized"], last["restarted"], last["added"], last["removed"]) == (["added"], [], [], [])
    assert stack.redis().smembers("rq:workers:kept") == kept  # untouched
    write_config(stack, AFTER)
    stack.workers.signal(signal.SIGHUP)
    wait_for(lambda: live_workers(stack, "added") == 1, timeout=30, message="back to one worker of added")
    assert status_of(stack, "added") == 200
