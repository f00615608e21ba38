"""The peer benchmark's pure parts: reading strace's record of where LiteLLM connected,
the layouts' notation, and the hash-locked requirements LiteLLM is installed from."""

from __future__ import annotations

import re
from pathlib import Path

from bench.layouts import name, parse_layout
from bench.peers.egress import destinations, leaves_host
from bench.peers.litellm_proxy import LOCK

# Lines as `strace -f -e trace=connect,sendto,sendmsg` writes them.
TRACE = """\
1998  connect(3, {sa_family=AF_UNIX, sun_path="/var/run/nscd/socket"}, 110) = -1 ENOENT (No such file or directory)
1998  connect(3, {sa_family=AF_INET, sin_port=htons(53), sin_addr=inet_addr("10.255.255.53")}, 16) = 0
1998  sendto(3, "\\x12\\x34", 2, MSG_NOSIGNAL, NULL, 0) = 2
1341  connect(20, {sa_family=AF_INET, sin_port=htons(18901), sin_addr=inet_addr("127.0.0.1")}, 16) = -1 EINPROGRESS
1341  connect(22, {sa_family=AF_INET, sin_port=htons(18901), sin_addr=inet_addr("127.0.0.1")}, 16) = -1 EINPROGRESS
1342  connect(7, {sa_family=AF_INET6, sin6_port=htons(443), sin6_flowinfo=htonl(0), \
inet_pton(AF_INET6, "2606:4700::6810:84e5", &sin6_addr), sin6_scope_id=0}, 28) = 0
1343  sendto(9, "x", 1, 0, {sa_family=AF_INET, sin_port=htons(53), sin_addr=inet_addr("8.8.8.8")}, 16) = 1
1344  +++ exited with 0 +++
"""


def test_every_destination_is_read_with_its_count():
    found = destinations(TRACE)
    assert found == {
        ("unix", "/var/run/nscd/socket"): 1,
        ("10.255.255.53", 53): 1,
        ("127.0.0.1", 18901): 2,
        ("2606:4700::6810:84e5", 443): 1,
        ("8.8.8.8", 53): 1,
    }


def test_only_loopback_and_local_sockets_stay_on_the_machine():
    outside = sorted(d for d in destinations(TRACE) if leaves_host(d))
    assert outside == [("10.255.255.53", 53), ("2606:4700::6810:84e5", 443), ("8.8.8.8", 53)]
    assert not leaves_host(("::1", 8080))
    assert not leaves_host(("127.0.0.2", 8080))


def test_layouts_read_and_named_back():
    layout = parse_layout("2x768/4x256+LOG_LEVEL=info+WEB_CONNECTIONS=2048")
    assert (layout.web_concurrency, layout.web_threads, layout.workers, layout.concurrency) == (2, 768, 4, 256)
    assert dict(layout.env) == {"LOG_LEVEL": "info", "WEB_CONNECTIONS": "2048"}
    assert name(layout) == "2x768/4x256+LOG_LEVEL=info+WEB_CONNECTIONS=2048"
    assert name(parse_layout("2x64/2x16")) == "2x64/2x16"


def test_the_lock_pins_every_package_with_hashes_and_no_compromised_litellm():
    text = Path(LOCK).read_text()
    pinned = r"^([A-Za-z0-9_.\[\],-]+)==([^ \\\n]+) \\\n((?:\s+--hash=sha256:[0-9a-f]{64}(?: \\)?\n)+)"
    requirements = re.findall(pinned, text, flags=re.M)
    named = [line for line in text.splitlines() if line and not line[0].isspace() and not line.startswith("#")]
    assert len(requirements) == len(named) > 50  # every requirement line is pinned and hashed
    versions = {package.lower(): version for package, version, _ in requirements}
    assert "litellm" in versions
    assert versions["litellm"] not in {"1.82.7", "1.82.8"}  # the releases compromised on PyPI
