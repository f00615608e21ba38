"""Each process's entry point installs its side's library patches, once, before it serves:
gunicorn's config for the web processes, ``python -m workers`` for the worker processes.
Each case runs in a fresh interpreter (tests/unit/test_no_import_patches.py checks that
importing the modules alone installs nothing)."""

from __future__ import annotations

import subprocess
import sys

from tests.harness import ROOT

CONFIG = "models:\n  - name: m\n    type: generic\n    base_url: http://127.0.0.1:9/v1\n"

PATCHED = (
    "import gunicorn.util, rq.job, rq.queue\n"
    "from shared.plumbing import rq_patches\n"
    "def patched():\n"
    "    return (rq.job.zlib is rq_patches.JobDataAsWritten, rq.job.str_to_date is rq_patches.str_to_date,\n"
    "            rq.queue.resolve_serializer is rq_patches.resolve_serializer,\n"
    "            gunicorn.util.write_error.__module__ == 'api.gunicorn_patches')\n"
)


def run(code: str, tmp_path) -> list[str]:
    config = tmp_path / "config.yaml"
    config.write_text(CONFIG)
    env = {"PATH": "/usr/bin:/bin", "TMPDIR": str(tmp_path), "HOME": str(tmp_path), "CONFIG_FILE_PATH": str(config),
           "GITLAB_URL": "http://127.0.0.1:9", "GITLAB_API_TOKEN": "unused", "REDIS_URL": "redis://127.0.0.1:9/0",
           "LOG_LEVEL": "error"}
    done = subprocess.run([sys.executable, "-c", PATCHED + code], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    return [line for line in done.stdout.splitlines() if line.startswith("patched")]


def test_gunicorn_s_config_installs_the_web_process_patches(tmp_path):
    # GitLab does not answer here: the config warns and goes on, as it does at a real start.
    lines = run("import runpy\n"
                "print('patched before', patched())\n"
                "runpy.run_path('config/gunicorn.conf.py')\n"
                "print('patched after', patched())\n", tmp_path)
    assert lines == ["patched before (False, False, False, False)", "patched after (True, True, True, True)"]


def test_python_m_workers_installs_the_worker_process_patches_before_its_supervisor_starts(tmp_path):
    lines = run("import sys, workers.supervisor\n"
                "class Supervisor:\n"
                "    def __init__(self, *args, **kwargs):\n"
                "        print('patched as the supervisor starts', patched())\n"
                "    def run(self):\n"
                "        return 0\n"
                "workers.supervisor.Supervisor = Supervisor\n"
                "import workers.__main__\n"
                "print('patched before', patched())\n"
                "sys.exit(workers.__main__.main(['m']))\n", tmp_path)
    assert lines == ["patched before (False, False, False, False)",
                     "patched as the supervisor starts (True, True, True, False)"]
