"""Does the peer reach out? LiteLLM's proxy started under strace, asked a few questions, and
every address its processes connected or sent to listed: a run that leaves this machine
(a model cost map download, telemetry, a DNS lookup) shows up here as an address that is
not loopback.
"""

from __future__ import annotations

import ipaddress
import re
import shutil
from collections import Counter
from pathlib import Path

import requests

from bench.peers.litellm_proxy import MASTER_KEY, LiteLLMProxy

INET = re.compile(r'sin6?_port=htons\((\d+)\).*?(?:inet_addr\("([^"]+)"\)|inet_pton\(AF_INET6?, "([^"]+)")')
UNIX = re.compile(r'sun_path=(?:@)?"([^"]+)"')
CALL = re.compile(r"\b(connect|sendto|sendmsg)\(")


def destinations(trace: str) -> Counter:
    """(address, port) or ("unix", path) of every connect/sendto/sendmsg that named one."""
    found: Counter = Counter()
    for line in trace.splitlines():
        if not CALL.search(line):
            continue
        inet = INET.search(line)
        if inet:
            found[(inet.group(2) or inet.group(3), int(inet.group(1)))] += 1
            continue
        unix = UNIX.search(line)
        if unix:
            found[("unix", unix.group(1))] += 1
    return found


def leaves_host(destination: tuple) -> bool:
    address, _ = destination
    if address == "unix":
        return False
    return not ipaddress.ip_address(address).is_loopback


def check(directory: Path, sandbox_url: str, provider_key: str, *, requests_count: int = 10) -> list[str]:
    """Lines for the report: what LiteLLM connected to while starting and answering."""
    if shutil.which("strace") is None:
        return ["- Outbound connections: not checked (strace is not installed: `apt-get install strace`)."]
    trace_path = Path(directory) / "litellm.strace"
    proxy = LiteLLMProxy(directory, sandbox_url, provider_key,
                         wrapper=["strace", "-f", "-qq", "-e", "trace=connect,sendto,sendmsg", "-o", str(trace_path)])
    try:
        proxy.start(timeout=300)
        for _ in range(requests_count):
            requests.post(f"{proxy.url}/v1/chat/completions", timeout=30,
                          headers={"Authorization": f"Bearer {MASTER_KEY}"},
                          json={"model": proxy.model, "messages": [{"role": "user", "content": "hi"}]}
                          ).raise_for_status()
    finally:
        proxy.stop()
    found = destinations(trace_path.read_text(errors="replace"))
    listed = ", ".join(f"{a}:{p} ({n}x)" for (a, p), n in sorted(found.items())) or "none"
    outside = [d for d in found if leaves_host(d)]
    verdict = (f"**{len(outside)} outside this machine**: " + ", ".join(f"{a}:{p}" for a, p in outside)
               if outside else "none outside this machine")
    return [f"- Outbound connections of LiteLLM (strace, start-up and {requests_count} requests): {verdict}; "
            f"every destination: {listed}."]
