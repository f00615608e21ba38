"""Importing the gateway's modules changes no library: every change a process makes to one
is made by its entry point, through its side's ``install_patches()``.

Each case runs in fresh interpreters. The first imports every module under api/, shared/,
workers/, sandbox/ and tools/ and lists the library modules that pulled in (the standard
library's included). The second imports those library modules first, notes every function,
class and module each of them holds, and every method of their classes, then imports the
gateway's modules and compares: each must still be the very same object.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.harness import ROOT

PROJECT_PACKAGES = ("api", "shared", "workers", "sandbox", "tools")

PROBE = r"""
import importlib, json, pkgutil, sys, types

PACKAGES = %(packages)r
INSTALL = %(install)r
KINDS = (types.FunctionType, types.BuiltinFunctionType, types.ModuleType, type, classmethod, staticmethod, property)


def project_modules():
    names = []
    for package in PACKAGES:
        names.append(package)
        names += [m.name for m in pkgutil.walk_packages(importlib.import_module(package).__path__, package + ".")]
    return names


def libraries():
    return [(name, module) for name, module in list(sys.modules.items())
            if isinstance(module, types.ModuleType) and name.split(".")[0] not in PACKAGES and name != "__main__"]


def noted():
    # (module, class or "", name) -> the object: what a patch would replace.
    found = {}
    for module_name, module in libraries():
        for name, value in list(vars(module).items()):
            if isinstance(value, KINDS):
                found[(module_name, "", name)] = value
            if isinstance(value, type) and value.__module__ == module_name:
                for attribute, member in list(vars(value).items()):
                    if isinstance(member, KINDS):
                        found[(module_name, name, attribute)] = member
    return found


def current(module_name, class_name, name):
    owner = vars(sys.modules[module_name])
    if class_name:
        owner = vars(owner[class_name]) if class_name in owner else {}
    return owner.get(name)


if sys.argv[1] == "list":
    for name in project_modules():
        importlib.import_module(name)
    print(json.dumps(sorted(name for name, _ in libraries())))
else:
    for name in json.loads(sys.stdin.read()):
        try:
            importlib.import_module(name)
        except Exception:
            pass  # loads only as a side effect of another module's import
    before = noted()
    for name in project_modules():
        importlib.import_module(name)
    if INSTALL:
        module_name, _, function = INSTALL.partition(":")
        getattr(importlib.import_module(module_name), function)()
    dotted = lambda key: ".".join(part for part in key if part)
    print(json.dumps({"checked": sorted(map(dotted, before)),
                      "changed": sorted(dotted(key) for key, value in before.items() if current(*key) is not value)}))
"""

RQ_PATCHES = {*(f"rq.{module}.resolve_serializer" for module in ("job", "queue", "registry", "results", "worker.base")),
              "rq.job.zlib", "rq.job.str_to_date"}
# Named here so that a change in how they are reached cannot make the check skip them.
WATCHED = {*RQ_PATCHES, "http.client.parse_headers", "http.client.HTTPResponse.begin",
           "prometheus_client.values.ValueClass", "gunicorn.util.write_error",
           "gunicorn.http.wsgi.Response.default_headers",
           "rq_dashboard.web.Worker", "rq_dashboard.web.Job"}


def env(tmp_path) -> dict[str, str]:
    # api.wsgi builds the app when imported: it needs a config, and connects to nothing yet.
    return {"PATH": "/usr/bin:/bin", "TMPDIR": str(tmp_path), "HOME": str(tmp_path),
            "CONFIG_FILE_PATH": str(ROOT / "config" / "example.yaml"), "GITLAB_URL": "http://127.0.0.1:9",
            "GITLAB_API_TOKEN": "unused", "REDIS_URL": "redis://127.0.0.1:9/0", "LOG_LEVEL": "error"}


def probe(tmp_path, mode: str, install: str | None = None, stdin: str | None = None) -> str:
    code = PROBE % {"packages": PROJECT_PACKAGES, "install": install}
    done = subprocess.run([sys.executable, "-c", code, mode], cwd=ROOT, env=env(tmp_path), input=stdin,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.fixture(scope="module")
def library_modules(tmp_path_factory) -> str:
    return probe(tmp_path_factory.mktemp("list"), "list")


def changes(tmp_path, library_modules: str, install: str | None = None) -> tuple[set[str], set[str]]:
    found = json.loads(probe(tmp_path, "compare", install, stdin=library_modules).splitlines()[-1])
    return set(found["checked"]), set(found["changed"])


def test_importing_every_module_of_the_gateway_changes_no_library(tmp_path, library_modules):
    checked, changed = changes(tmp_path, library_modules)
    assert WATCHED <= checked
    assert changed == set()


def test_the_web_process_patches_exactly_what_api_patches_lists(tmp_path, library_modules):
    _checked, changed = changes(tmp_path, library_modules, install="api.patches:install_patches")
    assert changed == {*RQ_PATCHES, "gunicorn.util.write_error", "gunicorn.http.wsgi.Response.default_headers"}


def test_a_worker_process_patches_exactly_what_workers_patches_lists(tmp_path, library_modules):
    _checked, changed = changes(tmp_path, library_modules, install="workers.patches:install_patches")
    assert changed == RQ_PATCHES


def test_the_rq_dashboard_tool_patches_only_its_two_lookups(tmp_path, library_modules):
    _checked, changed = changes(tmp_path, library_modules, install="tools.rq_dashboard:install_json_lookups")
    assert changed == {"rq_dashboard.web.Worker", "rq_dashboard.web.Job"}
