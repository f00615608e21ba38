"""A provider's streamed answer, read as server-sent events while it arrives.

``raw.read1`` hands over whatever bytes have arrived (chunked or not), so no
event waits for a buffer to fill. Every read waits at most the model's
``stream_idle_timeout``; the whole stream lasts at most ``max_stream_duration``;
a cancelled job's socket is shut down under it (``workers.cancel``).
"""

from __future__ import annotations

import time
from collections.abc import Iterator

from urllib3.exceptions import HTTPError as Urllib3Error
from urllib3.exceptions import ReadTimeoutError

from shared.config import ModelConfig
from shared.durations import format_duration
from shared.errors import UpstreamError
from shared.sse import SSEParser
from workers.cancel import CancelScope, cancelled_error

READ_SIZE = 65536


class UpstreamStream:
    def __init__(self, response, *, model: ModelConfig, scope: CancelScope | None, attempts: int,
                 retry_reasons: list[str], started: float):
        self.response = response
        self.model = model
        self.scope = scope
        self.attempts = attempts
        self.retry_reasons = retry_reasons
        self.started = started
        self._idle_timeout()

    def _idle_timeout(self) -> None:
        # The request's read timeout also bounded the wait for the headers (never past
        # the deadline); from here on, a read may wait for the idle timeout.
        try:
            self.response.raw.connection.sock.settimeout(self.model.stream_idle_timeout)
        except AttributeError:
            pass

    def events(self) -> Iterator[tuple[str | None, str]]:
        parser = SSEParser()
        ends = time.monotonic() + self.model.max_stream_duration
        try:
            while True:
                if time.monotonic() > ends:
                    raise UpstreamError(f"The stream from model '{self.model.name}' ran past its "
                                        f"max_stream_duration of {format_duration(self.model.max_stream_duration)}.")
                try:
                    data = self.response.raw.read1(READ_SIZE)
                except (ReadTimeoutError, TimeoutError):
                    idle = format_duration(self.model.stream_idle_timeout)
                    message = f"The provider for model '{self.model.name}' sent nothing for {idle}."
                    raise self._broken(message) from None
                except (Urllib3Error, OSError, ValueError):
                    message = f"The stream from the provider for model '{self.model.name}' broke off."
                    raise self._broken(message) from None
                if not data:
                    return
                yield from parser.feed(data)
        finally:
            self.response.close()

    def _broken(self, message: str) -> Exception:
        if self.scope is not None and self.scope.cancelled:
            return cancelled_error(self.scope)
        return UpstreamError(message)

    def close(self) -> None:
        self.response.close()
