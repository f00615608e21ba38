"""The sandbox provider's faults: a directive's (fail=, hang, close, delay_ms, times) and a provider-wide
outage (POST /_sandbox/outage). Both answer through the handler they are given.

Stream faults (fail_after, error_after, chunk_delay_ms, silence_ms) act mid-stream: sandbox.provider_stream.
A context window's refusal (-ctx<N> model ids) is a request's answer, not a fault: sandbox.provider_logic.
"""

from __future__ import annotations

import json
import time

from sandbox.provider_stream import wait_for_close

HANG_TIMEOUT = 300.0


def inject_fault(handler, api: str, opts: dict, key: str, attempt: int) -> bool:
    """Apply the directive; True when the call has been answered (or deliberately not)."""
    if "delay_ms" in opts:
        time.sleep(opts["delay_ms"] / 1000)
    if "times" in opts and attempt > opts["times"]:
        return False  # `times` limits every fault kind, not only `fail`
    if opts.get("hang"):
        hang(handler, key)
        handler.close_connection = True
        return True
    if opts.get("close"):
        handler.close_connection = True  # returning without a byte makes the client see a reset/EOF
        return True
    if "fail" in opts:
        status = opts["fail"]
        extra = {"Retry-After": opts["retry_after"]} if "retry_after" in opts else None
        handler._error(api, status, f"sandbox injected {status}", extra, code="sandbox_injected")
        return True
    return False


def hang(handler, key: str) -> None:
    """Answer nothing until the client closes or the server's hang_timeout passes; log it in /_sandbox/hangs."""
    server = handler.server
    entry = {"key": key, "started": time.time(), "ended": None, "reason": None}
    with server.lock:
        server.hangs.append(entry)
    closed = wait_for_close(handler.connection, server.hang_timeout)
    reason = "client_closed" if closed else "timeout"
    with server.lock:
        entry["ended"], entry["reason"] = time.time(), reason


# A provider-wide outage: unlike a directive it hits every request, as a real provider's outage or a key's
# quota does, whichever client sends it (tests of deployments).

def set_outage(handler, raw: bytes) -> None:
    """POST /_sandbox/outage {"status": 500, "retry_after": 2, "times": 3}; {"status": null} ends it."""
    try:
        body = json.loads(raw or b"{}")
        status = body.get("status")
        if status is not None and not (isinstance(status, int) and 400 <= status <= 599):
            raise ValueError("'status' must be an HTTP error status or null")
    except (ValueError, AttributeError) as exc:
        return handler._error("openai", 400, f"bad outage: {exc}")
    server = handler.server
    with server.lock:
        server.outage = None if status is None else {
            "status": status, "retry_after": body.get("retry_after"), "times": body.get("times"), "served": 0}
    return handler._send_json(200, {"outage": server.outage})


def in_outage(handler, api: str) -> bool:
    """True when an outage answered this model call (and counted it against its `times`)."""
    server = handler.server
    with server.lock:
        outage = server.outage
        if outage is None or (outage["times"] is not None and outage["served"] >= outage["times"]):
            return False
        outage["served"] += 1
    extra = {"Retry-After": str(outage["retry_after"])} if outage["retry_after"] is not None else None
    handler._error(api, outage["status"], f"sandbox outage: {outage['status']}", extra, code="sandbox_outage")
    return True
