"""``models[]`` entries of an integration test's config, served by the harness's stand-ins
(``tests.harness.Stack`` replaces ``{sandbox}``, ``{vertex}`` and ``{vertex_credentials}``): the
blocks every stack spells the same way, written once. A test's own settings come as keyword
arguments, each a YAML value as it would stand in the config (``timeout="30s"``,
``rate_limit="{requests_per_minute: 2}"``)."""

from __future__ import annotations

# Where each type's sandbox endpoint is, and the upstream model name its stand-in answers for.
_BASE_URL = {"generic": "{sandbox}/v1", "openai": "{sandbox}/v1", "anthropic": "{sandbox}"}
SANDBOX_KEY = "${SANDBOX_PROVIDER_KEY}"


def _entry(name: str, fields: dict) -> str:
    lines = [f"  - name: {name}"] + [f"    {key}: {value}" for key, value in fields.items() if value is not None]
    return "\n".join(lines) + "\n"


def sandbox_model(name: str, type: str = "generic", *, model: str | None = None, timeout: str = "10s",
                  workers: int = 1, base_url: str | None = None, api_key: str | None = SANDBOX_KEY,
                  **settings) -> str:
    """A model the sandbox provider serves: ``generic`` and ``openai`` at its ``/v1``, ``anthropic``
    at its root. ``base_url`` elsewhere (a dead port) and ``api_key`` another (a wrong one; None:
    none) are a test's own."""
    return _entry(name, {"type": type, "base_url": f'"{base_url or _BASE_URL[type]}"',
                         "api_key": f'"{api_key}"' if api_key is not None else None, "model": model,
                         "timeout": timeout, "workers": workers, **settings})


def vertex_model(name: str = "gemini", *, model: str = "gemini-2.0-flash", timeout: str = "10s", workers: int = 1,
                 **settings) -> str:
    """A Gemini model on the Vertex AI stand-in, with the service-account key the harness writes."""
    return _entry(name, {"type": "vertex", "project": "standin-project", "location": "us-central1",
                         "base_url": '"{vertex}/v1"', "credentials_file": '"{vertex_credentials}"', "model": model,
                         "timeout": timeout, "workers": workers, **settings})
