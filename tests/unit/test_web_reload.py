"""What gunicorn's master accepts when its config file runs again on SIGHUP (api.startup.accept):
a valid gateway config replaces the one in force, an invalid one is refused with its reasons
logged and the one in force kept (the master must not exit), and a graceful stop waits for the
longest stream any accepted configuration allowed. The whole reload, through gunicorn, is
tests/integration/test_reload.py."""

from __future__ import annotations

import logging

import pytest

from api import startup


def models(*names: str, longest: str = "10m") -> str:
    return "models:\n" + "".join(f"  - {{name: {name}, type: generic, base_url: 'http://llm.internal/v1', "
                                  f"max_stream_duration: {longest}}}\n" for name in names)


@pytest.fixture
def master(tmp_path, monkeypatch):
    """A fresh master's state (restored after), and its config file."""
    monkeypatch.setattr(startup, "_accepted", None)
    monkeypatch.setattr(startup, "_longest_stream", 0.0)
    monkeypatch.setattr(startup, "MODEL_NAMES", [])
    monkeypatch.setattr(startup, "setup_logging", lambda *args, **kwargs: None)  # pytest's logging stays
    path = tmp_path / "config.yaml"
    path.write_text(models("a", "b", longest="20m"))
    monkeypatch.setenv("CONFIG_FILE_PATH", str(path))
    monkeypatch.setenv("GITLAB_URL", "http://gitlab.internal")
    monkeypatch.setenv("GITLAB_API_TOKEN", "glpat-gateway")
    return path


def test_a_valid_file_replaces_the_configuration_in_force(master, caplog):
    settings, config, reloading = startup.accept()
    assert not reloading and [m.name for m in config.models] == ["a", "b"] == startup.MODEL_NAMES
    master.write_text(models("a", "c"))
    with caplog.at_level(logging.INFO, logger="aigw.api"):
        _, config, reloading = startup.accept()
    assert reloading and [m.name for m in config.models] == ["a", "c"] == startup.MODEL_NAMES
    assert startup.served()[1] is config  # what the workers forked next serve
    (record,) = [r for r in caplog.records if r.message.startswith("configuration reloaded")]
    assert (record.added, record.removed) == (["c"], ["b"])


def test_an_invalid_file_is_refused_and_the_configuration_in_force_kept(master, caplog):
    _, before, _ = startup.accept()
    master.write_text("models:\n  - {name: a, type: gemini}\n")
    with caplog.at_level(logging.ERROR, logger="aigw.api"):
        _, config, reloading = startup.accept()  # no SystemExit: the master lives on
    assert reloading and config is before and startup.served()[1] is before
    (record,) = [r for r in caplog.records if r.message.startswith("configuration reload refused")]
    assert "models[0].type: must be one of openai, anthropic, vertex, generic" in record.problems


def test_a_graceful_stop_waits_for_the_longest_stream_any_accepted_configuration_allowed(master):
    _, first, _ = startup.accept()
    assert startup.longest_stream() == first.max_stream_duration >= 1200
    master.write_text(models("a", "b", longest="5m"))
    _, second, _ = startup.accept()
    assert second.max_stream_duration < 1200
    assert startup.longest_stream() == first.max_stream_duration  # a worker forked before may hold a 20-minute stream


def test_at_start_a_problem_exits_2(master, monkeypatch):
    monkeypatch.delenv("GITLAB_URL")
    with pytest.raises(SystemExit) as stopped:
        startup.accept()
    assert stopped.value.code == 2
