"""A lean client holding many streams open at once: asyncio, one raw connection per stream,
no HTTP library, so the client is not what limits a capacity benchmark.

Each stream asks the sandbox provider (through the gateway) for words sent one every
``interval_ms``, each word replaced by the time the provider sent it
(``sandbox.provider_stream.SEND_TIME_MARK``); the client notes when each arrived. Both
clocks are this host's.

Connections are spread over source addresses 127.0.0.2, 127.0.0.3, ... (``per_address``
each), as many clients would be, so a per-address connection cap does not refuse them.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from dataclasses import dataclass, field

from sandbox.provider_stream import SEND_TIME_MARK

STAMP = re.compile(rb"\d{10}\.\d{6}")  # the provider's send time, as the sandbox writes it
CARRY = 32  # bytes kept from one read to the next, so a stamp cut in two is still found


@dataclass
class StreamRecord:
    index: int
    source: str
    requested: float = 0.0  # epoch seconds
    opened: float | None = None  # the response's head arrived
    status: int | None = None
    arrivals: list[tuple[float, float]] = field(default_factory=list)  # (sent, received), epoch seconds
    completed: bool = False  # the stream ended with [DONE]
    error: str | None = None  # what went wrong: a status and code, an error event, a dropped connection

    def lateness_in(self, start: float, end: float) -> list[float]:
        return [received - sent for sent, received in self.arrivals if start <= sent < end]


def request_bytes(host: str, port: int, token: str, model: str, words: int, interval_ms: int) -> bytes:
    prompt = f"[[sandbox chunk_delay_ms={interval_ms}]] " + " ".join([SEND_TIME_MARK.decode()] * words)
    body = json.dumps({"model": model, "stream": True, "messages": [{"role": "user", "content": prompt}]}).encode()
    head = (f"POST /v1/chat/completions HTTP/1.1\r\nHost: {host}:{port}\r\nAuthorization: Bearer {token}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n")
    return head.encode() + body


def source_address(index: int, per_address: int) -> str:
    number = 2 + index // per_address
    if number > 254:
        raise ValueError("too many streams for the 127.0.0.x source addresses: raise per_address")
    return f"127.0.0.{number}"


async def hold_stream(record: StreamRecord, host: str, port: int, payload: bytes, *, open_timeout: float,
                      read_timeout: float) -> None:
    """One stream from request to its end; everything it saw goes into ``record``."""
    writer = None
    record.requested = time.time()
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(host, port, local_addr=(record.source, 0)), open_timeout)
        writer.write(payload)
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), open_timeout)
        record.opened = time.time()
        record.status = int(head.split(b" ", 2)[1])
        if record.status != 200:
            body = await asyncio.wait_for(reader.read(4096), read_timeout)
            record.error = f"{record.status} {_error_code(body)}"
            return
        carry = b""
        while True:
            data = await asyncio.wait_for(reader.read(65536), read_timeout)
            received = time.time()
            if not data:
                record.error = "connection closed before [DONE]"
                return
            window = carry + data
            for match in STAMP.finditer(window):
                if match.end() > len(carry):  # not counted with the previous read
                    record.arrivals.append((float(match.group()), received))
            if b"data: [DONE]" in window:
                record.completed = True
                return
            if b'"error"' in data:
                record.error = "error event"
                return
            carry = window[-CARRY:]
    except TimeoutError:
        record.error = "timed out" if record.opened else "no response head in time"
    except (OSError, asyncio.IncompleteReadError, ValueError, IndexError) as error:
        record.error = f"{type(error).__name__}"
    finally:
        if writer is not None:
            writer.close()


def _error_code(body: bytes) -> str:
    try:
        text = body[body.index(b"{"):].decode(errors="replace")
        return str(json.JSONDecoder().raw_decode(text)[0]["error"].get("code"))
    except (ValueError, KeyError, TypeError, AttributeError):
        return "?"
