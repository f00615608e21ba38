"""The ``python -m shared.config check`` CLI: summary without secrets, CONFIG_FILE_PATH, warnings, exit codes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.unit.config_fixtures import ANTHROPIC_KEY, FULL_YAML, KEYS, NO_ROUTES_WARNING, OPENAI_KEY, write

REPO_ROOT = Path(__file__).resolve().parents[2]


def run_check(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k not in ("CONFIG_FILE_PATH", *KEYS)}
    return subprocess.run([sys.executable, "-m", "shared.config", "check", *args], cwd=REPO_ROOT,
                          env={**base, **(env or {})}, capture_output=True, text=True, timeout=60)


def test_check_good_file_prints_summary_without_key(tmp_path: Path, ca_file: str) -> None:
    path = write(tmp_path, FULL_YAML.replace("CA_FILE", ca_file))
    result = run_check(str(path), env=KEYS)
    assert result.returncode == 0, result.stderr
    summary = "openai-gpt4: type openai, base_url https://api.openai.com/v1, upstream model gpt-4o"
    assert summary in result.stdout
    assert "local-llama" in result.stdout and "project-123-gpt4" in result.stdout
    assert "api key: set" in result.stdout and "api key: not set" in result.stdout
    assert "200 requests/min per user" in result.stdout
    assert OPENAI_KEY not in result.stdout + result.stderr
    assert ANTHROPIC_KEY not in result.stdout + result.stderr


def test_check_reads_config_file_path_and_prints_warnings(tmp_path: Path) -> None:
    path = write(tmp_path, "models:\n  - {name: gpt, type: openai}\n")
    result = run_check(env={"CONFIG_FILE_PATH": str(path)})
    assert result.returncode == 0, result.stderr
    assert "gpt" in result.stdout and "api key: not set" in result.stdout
    assert NO_ROUTES_WARNING in result.stdout


def test_check_bad_file_exits_2_without_traceback(tmp_path: Path) -> None:
    path = write(tmp_path, "models:\n  - name: gpt\n    type: openai\n    workers: two\nextra: 1\n")
    result = run_check(str(path))
    assert result.returncode == 2
    assert result.stderr.splitlines() == ["config error: extra: unknown key",
                                          "config error: models[0].workers: must be an integer, got 'two'"]
    assert "Traceback" not in result.stderr + result.stdout


def test_check_missing_file_exits_2(tmp_path: Path) -> None:
    result = run_check(str(tmp_path / "nope.yaml"))
    assert result.returncode == 2 and "cannot read config file" in result.stderr
    assert "Traceback" not in result.stderr


def test_check_shows_each_models_reasoning_and_drop_params(tmp_path: Path) -> None:
    path = write(tmp_path, "models:\n"
                 "  - {name: gpt, type: openai, reasoning: effort}\n"
                 "  - {name: claude, type: anthropic}\n"
                 "  - {name: plain, type: openai, drop_params: []}\n"
                 "defaults:\n  drop_params: [tools.web_search, thinking]\n")
    result = run_check(str(path))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "    reasoning effort, drop_params [tools.web_search, thinking], /v1/responses passed through" in lines
    assert "    reasoning budget, drop_params [tools.web_search, thinking]" in lines  # the type's default control
    assert "    reasoning none, drop_params none, /v1/responses passed through" in lines  # [] opts out
    assert "defaults: drop_params [tools.web_search, thinking]" in lines


def test_check_shows_what_serves_gitlab_duo(tmp_path: Path) -> None:
    path = write(tmp_path, "models:\n  - {name: gpt, type: openai}\n  - {name: coder, type: generic, "
                           "base_url: 'http://llm.internal/v1'}\nduo:\n  duo_chat: gpt\n  prompts:\n"
                           "    coder: {family: codellama, chat_system: 'Hi'}\n")
    result = run_check(str(path), env=KEYS)
    assert result.returncode == 0, result.stderr
    assert ("duo: instances any GITLAB_URL vouches for, features duo_chat -> gpt (otherwise the model GitLab "
            "names), prompts overridden coder (family codellama, chat_system)") in result.stdout
