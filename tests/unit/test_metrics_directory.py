"""The metrics directory is chosen before prometheus-client is imported, which picks its
storage (memory or files) once, on import. Each case runs in a fresh interpreter."""

from __future__ import annotations

import subprocess
import sys

from tests.harness import ROOT


def run(code: str, tmp_path) -> subprocess.CompletedProcess:
    env = {"PATH": "/usr/bin:/bin", "TMPDIR": str(tmp_path), "HOME": str(tmp_path)}
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=60)


def test_a_directory_chosen_first_makes_every_metric_write_files(tmp_path):
    done = run("from shared.metrics_directory import use_host_directory\n"
               "d = use_host_directory()\n"
               "from shared import metrics\n"
               "metrics.GITLAB_REQUESTS.labels('200').inc()\n"
               "print(sorted(p.name for p in d.glob('*.db')))", tmp_path)
    assert done.returncode == 0, done.stderr
    assert "counter_" in done.stdout


def test_a_directory_chosen_too_late_fails_loudly_instead_of_counting_in_memory(tmp_path):
    done = run("import prometheus_client\n"
               "from shared.metrics_directory import use_host_directory\n"
               "use_host_directory()\n"
               "from shared import metrics", tmp_path)
    assert done.returncode != 0
    assert "use_host_directory() first" in done.stderr


def test_the_worker_entry_point_chooses_the_directory_before_importing_the_metrics(tmp_path):
    done = run("import sys, workers.__main__\n"
               "print('prometheus_client' in sys.modules)", tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"  # imported only in main(), after use_host_directory()
