"""One HTTP call to a provider, with retries, bounded by the request's deadline.

Every attempt carries connect and read timeouts derived from the time left, so a
hung provider frees the worker at the deadline. Outcomes map to the gateway's
error hierarchy (``shared.errors``): the provider's 401/403/404 mean the
gateway's own key or model id is wrong (502), while 400/413/422 are the
caller's and pass through with the provider's message.

At ``LOG_LEVEL=debug`` every attempt leaves a record naming the URL it called
(without credentials or query values: keys travel in headers, and a URL is
redacted anyway) and its outcome: the status, or why no answer came.
"""

from __future__ import annotations

import email.utils
import json
import logging
import math
import os
import re
import time
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import orjson
import requests
import urllib3

from shared import metrics
from shared.config import ModelConfig
from shared.errors import (
    ContextLengthExceeded,
    DeadlineExceeded,
    GatewayError,
    UpstreamAuthError,
    UpstreamError,
    UpstreamModelNotFound,
    UpstreamRateLimited,
    UpstreamRejected,
)
from workers.cancel import CancellableAdapter, CancelScope, cancelled_error, current_scope
from workers.retry import RETRYABLE_STATUSES, Retryable, upstream_retrying
from workers.upstream_stream import UpstreamStream

log = logging.getLogger("aigw.upstream")

CONNECT_TIMEOUT = 5.0
PASSED_THROUGH = frozenset({400, 413, 422})
MAX_MESSAGE = 500
SHOWN_QUERY = frozenset({"alt"})  # query values a debug record may show: no credential is ever one of these
_QUERY_IN_TEXT = re.compile(r"\?[^\s'\"()]*")


@dataclass
class UpstreamRequest:
    url: str
    body: dict | None
    headers: dict[str, str] = field(default_factory=dict)
    method: str = "POST"  # GET and DELETE (a response the provider keeps, by id) send no body


@dataclass
class UpstreamResult:
    status: int
    data: dict
    attempts: int
    seconds: float
    retry_reasons: list[str] = field(default_factory=list)


class UpstreamClient:
    """A pooled HTTPS session for one model, with that model's TLS settings."""

    def __init__(self, model: ModelConfig, *, pool_size: int = 4, single_attempt: bool = False):
        self.model = model
        # One deployment of several (workers.deployments): a retryable failure is raised as it is,
        # and the deployments' own loop decides where the next attempt goes.
        self.single_attempt = single_attempt
        self.session = requests.Session()
        # requests re-reads the whole environment for proxy settings on every call
        # (docs/benchmarks.md). A model's URL never changes, so resolve HTTPS_PROXY /
        # NO_PROXY (and REQUESTS_CA_BUNDLE) for it once.
        self.session.trust_env = False
        self.session.proxies = requests.utils.get_environ_proxies(model.base_url)
        bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
        self.session.verify = model.ca_file or (model.verify_tls and (bundle or True))
        self.adapter = CancellableAdapter(pool_connections=1, pool_maxsize=max(1, pool_size))
        self.session.mount("https://", self.adapter)
        self.session.mount("http://", self.adapter)
        self._templates: dict[tuple[str, bool], requests.PreparedRequest] = {}  # a model has a handful of URLs

    def post_json(self, request: UpstreamRequest, *, deadline: float) -> UpstreamResult:
        started = time.monotonic()
        response, attempts, reasons = self._call(request, deadline, read_timeout=None)
        try:
            data = orjson.loads(response.content)  # JSON is UTF-8 (RFC 8259); orjson checks that too
        except ValueError:
            raise UpstreamError(f"The provider for model '{self.model.name}' answered HTTP {response.status_code} "
                                "with a body that is not JSON.") from None
        if not isinstance(data, dict):
            raise UpstreamError(f"The provider for model '{self.model.name}' answered an unexpected "
                                "JSON shape.")
        return UpstreamResult(response.status_code, data, attempts, time.monotonic() - started, reasons)

    def open_stream(self, request: UpstreamRequest, *, deadline: float) -> UpstreamStream:
        """Retries until the provider accepts the request; after that, no retries: the
        answer is already flowing to the client."""
        started = time.monotonic()
        idle = self.model.stream_idle_timeout
        response, attempts, reasons = self._call(request, deadline, read_timeout=idle)
        return UpstreamStream(response, model=self.model, scope=current_scope(), attempts=attempts,
                              retry_reasons=reasons, started=started)

    def _call(self, request: UpstreamRequest, deadline: float, *, read_timeout: float | None):
        scope = current_scope()
        started = time.monotonic()
        # Most calls succeed at once: tenacity, whose machinery costs more than the attempt's
        # own Python on every call, takes over only once an attempt has failed.
        try:
            response = self._attempt(request, deadline, scope, read_timeout)
        except Retryable as failed:
            if self.single_attempt:
                self._observe(started, [])
                raise
            return self._retry(request, deadline, scope, read_timeout, failed, started)
        except GatewayError:
            self._observe(started, [])
            raise
        self._observe(started, [])
        return response, 1, []

    def _retry(self, request: UpstreamRequest, deadline: float, scope: CancelScope | None,
               read_timeout: float | None, first: Retryable, started: float):
        """The attempts after a first that failed with ``first``: tenacity's loop, which is
        handed that failure as its own first attempt, so its policies see every attempt."""
        attempts, reasons, replay = 0, [], first
        retrying = upstream_retrying(attempts=self.model.retry_attempts, deadline=deadline,
                                     sleep=scope.sleep if scope else time.sleep)
        try:
            for attempt in retrying:
                with attempt:
                    attempts += 1
                    try:
                        if replay is not None:
                            failed, replay = replay, None
                            raise failed
                        response = self._attempt(request, deadline, scope, read_timeout)
                    except Retryable as retryable:
                        reasons.append(retryable.reason)
                        raise
                    self._observe(started, reasons)
                    return response, attempts, reasons
        except Retryable as last:
            self._observe(started, reasons[:-1])  # the last failure was not retried
            if scope is not None and scope.cancelled:
                raise cancelled_error(scope) from None
            raise self.exhausted_error(last, attempts, deadline) from None
        except GatewayError:
            self._observe(started, reasons)
            raise
        raise AssertionError("unreachable: tenacity either returns or raises")

    def _observe(self, started: float, retried: list[str]) -> None:
        metrics.UPSTREAM_SECONDS.labels(self.model.name).observe(time.monotonic() - started)
        for reason in retried:
            metrics.UPSTREAM_RETRIES.labels(self.model.name, reason).inc()

    def _attempt(self, request: UpstreamRequest, deadline: float, scope: CancelScope | None,
                 read_timeout: float | None) -> requests.Response:
        """One call. ``read_timeout`` set: a stream, whose reads wait at most that long."""
        remaining = deadline - time.time()
        if scope is not None and scope.cancelled:
            raise cancelled_error(scope)
        if remaining <= 0:
            raise DeadlineExceeded()
        if scope is not None:
            scope.upstream_attempts += 1
        stream = read_timeout is not None
        debug = log.isEnabledFor(logging.DEBUG)
        sent = time.monotonic() if debug else 0.0
        try:
            # The session's adapter, not Session.send: that adds response hooks, a cookie jar and
            # redirect following, none of which a provider call wants, at a cost on every call.
            response = self.adapter.send(
                self._prepare(request, stream),
                timeout=(min(CONNECT_TIMEOUT, remaining), min(remaining, read_timeout or remaining)),
                stream=stream, verify=self.session.verify, proxies=self.session.proxies, cert=None,
            )
            if not stream:
                _read_whole(response)
        except requests.exceptions.RequestException as exc:
            cancelled = scope is not None and scope.cancelled
            failure = "cancelled" if cancelled else _failure(exc)
            metrics.UPSTREAM_REQUESTS.labels(self.model.name, failure).inc()
            if debug:
                self._debug_record(request, scope, stream, sent, error=failure, detail=self._clean(str(exc)))
            if cancelled:
                raise cancelled_error(scope) from None
            raise self._transport_error(exc, deadline) from None
        status = response.status_code
        metrics.UPSTREAM_REQUESTS.labels(self.model.name, str(status)).inc()
        if debug:
            self._debug_record(request, scope, stream, sent, status=status)
        if status in RETRYABLE_STATUSES:
            raise Retryable(f"status_{status}", status=status, retry_after=retry_after_seconds(response),
                            message=self._error_message(response))
        if status >= 400:
            message = self._error_message(response)
            if status == 400 and context_length_exceeded(response, message):
                raise ContextLengthExceeded(message or ContextLengthExceeded.default_message)
            raise self._refused(status, message)
        if status >= 300:
            # Where a request goes is configuration: never a provider's (or a client's) choice.
            raise UpstreamError(
                f"The provider for model '{self.model.name}' answered a redirect (HTTP {status}) to "
                f"'{self._clean(response.headers.get('Location', ''))}'; the gateway does not follow "
                "redirects: set the model's base_url to the final address.")
        return response

    def _debug_record(self, request: UpstreamRequest, scope: CancelScope | None, stream: bool, sent: float,
                      **outcome) -> None:
        """One attempt's record: the URL called and what came of it. With a status, the answer's
        headers are in (a stream's body follows); without one, ``error`` says why none came."""
        url = loggable_url(request.url)
        if self.model.api_key:
            url = url.replace(self.model.api_key, "[redacted]")
        fields = {"model": self.model.name, "url": url, "stream": stream,
                  "attempt": scope.upstream_attempts if scope is not None else None,
                  "seconds": round(time.monotonic() - sent, 3), **outcome}
        log.debug("upstream call" if "status" in outcome else "upstream call failed", extra=fields)

    def _prepare(self, request: UpstreamRequest, stream: bool) -> requests.PreparedRequest:
        """The request as ``Session.post`` would build it, minus its per-call merging of
        session settings and parsing of the URL: those are prepared once per URL, and only
        the headers and body vary per call. No cookie jar either: one caller's upstream
        cookies must not ride along on another caller's request."""
        if request.method != "POST":  # a URL per response id: no template kept
            prepared = requests.PreparedRequest()
            prepared.prepare(method=request.method, url=request.url, headers={**self.session.headers,
                                                                              **request.headers})
            return prepared
        template = self._templates.get((request.url, stream))
        if template is None:
            template = requests.PreparedRequest()
            template.prepare(method="POST", url=request.url, headers=self.session.headers)
            if stream:
                template.headers["Accept-Encoding"] = "identity"
            self._templates[(request.url, stream)] = template
        prepared = template.copy()
        prepared.headers.update(request.headers)
        prepared.headers["Content-Type"] = "application/json"
        prepared.prepare_body(orjson.dumps(request.body), None)
        return prepared

    def _transport_error(self, exc: requests.exceptions.RequestException, deadline: float) -> Exception:
        """No HTTP answer: retry what another attempt may fix."""
        if isinstance(exc, requests.exceptions.SSLError):
            return UpstreamError(f"TLS verification of the provider for model '{self.model.name}' "
                                 f"failed: {self._clean(failure_reason(exc))}")
        if isinstance(exc, requests.exceptions.ReadTimeout):
            if time.time() >= deadline - 0.01:
                return DeadlineExceeded()
            return Retryable("read_timeout")
        if isinstance(exc, requests.exceptions.ConnectionError):
            return Retryable("connect", message=self._clean(failure_reason(exc)))
        return UpstreamError(f"Calling the provider for model '{self.model.name}' failed: "
                             f"{self._clean(failure_reason(exc))}")

    def _refused(self, status: int, message: str) -> GatewayError:
        name = self.model.name
        if status in PASSED_THROUGH:
            return UpstreamRejected(message or f"The provider rejected the request (HTTP {status}).",
                                    status=status)
        if status in (401, 403):
            error = UpstreamAuthError(
                f"The provider for model '{name}' refused the gateway's credentials (HTTP {status}): "
                "the gateway's api_key for this model is missing, wrong or lacks access. "
                "This is a gateway configuration problem, not your credential.")
            error.upstream_status = status  # the breaker tells a 401 from a 403 (workers.breaker)
            return error
        if status == 404:
            return UpstreamModelNotFound(
                f"The provider for model '{name}' answered 404: its configured upstream model "
                f"'{self.model.model}' or base_url is wrong. This is a gateway configuration problem.")
        detail = f": {message}" if message else "."
        return UpstreamError(f"The provider for model '{name}' answered HTTP {status}{detail}")

    def exhausted_error(self, last: Retryable, attempts: int, deadline: float) -> GatewayError:
        """What the client gets once every attempt failed (also ``workers.deployments``', across deployments)."""
        name = self.model.name
        tries = f"{attempts} attempt{'s' if attempts != 1 else ''}"
        if last.reason == "read_timeout" and time.time() >= deadline - 0.05:
            return DeadlineExceeded()
        if last.status == 429:
            return UpstreamRateLimited(
                f"The provider for model '{name}' is rate limiting the gateway (HTTP 429 after {tries})"
                + (f": {last.message}" if last.message else "."),
                retry_after=last.retry_after)
        if last.status is not None:
            detail = f"HTTP {last.status}" + (f": {last.message}" if last.message else "")
        elif last.reason == "connect":
            detail = f"could not connect: {last.message}"
        else:
            detail = "no answer before the read timeout"
        return UpstreamError(f"The provider for model '{name}' failed after {tries}; last error: {detail}")

    def _error_message(self, response: requests.Response) -> str:
        try:
            data = response.json()
        except ValueError:
            return self._clean(response.text)
        return self._clean(error_message_from(data))

    def _clean(self, text: str) -> str:
        """Never echo the gateway's own key back (nor a URL's query, which may hold one: the
        connection errors of requests quote the URL), and keep messages short."""
        text = _QUERY_IN_TEXT.sub("?[redacted]", " ".join(str(text).split()))
        if self.model.api_key:
            text = text.replace(self.model.api_key, "[redacted]")
        return text[:MAX_MESSAGE]


def loggable_url(url: str) -> str:
    """``url`` without what may be a credential: user information, and query values other than
    the few known to be harmless (Vertex's ``alt=sse``)."""
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    query = urlencode([(name, value if name in SHOWN_QUERY else "[redacted]")
                       for name, value in parse_qsl(parts.query, keep_blank_values=True)], safe="[]")
    return urlunsplit((parts.scheme, host, parts.path, query, ""))


def _read_whole(response: requests.Response) -> None:
    """Read a whole answer into ``response.content`` in one read: requests' own ``content``
    reads through its chunk iterator and urllib3's stream, about ten times the Python for a
    short answer, on every answer's way back. Errors are requests' own, as with ``content``."""
    try:
        response._content = response.raw.read(decode_content=True) or b""
    except urllib3.exceptions.ProtocolError as exc:
        raise requests.exceptions.ChunkedEncodingError(exc) from exc
    except urllib3.exceptions.DecodeError as exc:
        raise requests.exceptions.ContentDecodingError(exc) from exc
    except urllib3.exceptions.ReadTimeoutError as exc:
        raise requests.exceptions.ConnectionError(exc) from exc
    except urllib3.exceptions.SSLError as exc:
        raise requests.exceptions.SSLError(exc) from exc
    response._content_consumed = True


def failure_reason(exc: BaseException) -> str:
    """Why a call got no answer, as the client may read it: the system's or the TLS library's own
    words (``Connection refused``, ``certificate verify failed: ...``), found down the chain of
    causes. ``str()`` of requests' errors nests urllib3's, which name Python classes and the URL."""
    pending, seen = [exc], set()
    while pending:
        error = pending.pop(0)
        if error is None or id(error) in seen:
            continue
        seen.add(id(error))
        verify = getattr(error, "verify_message", None)  # ssl.SSLCertVerificationError
        if isinstance(verify, str) and verify:
            return f"certificate verify failed: {verify}"
        if isinstance(error, OSError) and isinstance(error.strerror, str) and error.strerror:
            return error.strerror
        pending += [getattr(error, "reason", None), error.__cause__, error.__context__,
                    *(arg for arg in getattr(error, "args", ()) if isinstance(arg, BaseException))]
    return {requests.exceptions.SSLError: "the TLS handshake failed",
            requests.exceptions.ConnectionError: "the connection failed"}.get(type(exc), "no answer came")


def _failure(exc: requests.exceptions.RequestException) -> str:
    """A bounded label for a call that got no HTTP answer."""
    if isinstance(exc, requests.exceptions.SSLError):
        return "tls_error"
    if isinstance(exc, requests.exceptions.Timeout):
        return "timeout"
    if isinstance(exc, requests.exceptions.ConnectionError):
        return "connection_error"
    return "error"


def error_message_from(data) -> str:
    """The human message in an error body, in any of the shapes providers use."""
    if isinstance(data, dict):
        error = data.get("error")
        if isinstance(error, dict):
            return str(error.get("message") or error.get("type") or "")
        if isinstance(error, str):
            return error
        for key in ("message", "detail"):
            if isinstance(data.get(key), str):
                return data[key]
    return json.dumps(data)[:MAX_MESSAGE] if data else ""


# How providers say a request is longer than the model's context window (all answer HTTP 400):
# OpenAI's error code (openai-python: BadRequestError with code "context_length_exceeded"), Anthropic's
# message "prompt is too long: 208656 tokens > 200000 maximum" (quoted in anthropics/claude-code#59696),
# vLLM's (and OpenAI's older) "This model's maximum context length is 4096 tokens ...", Gemini's
# "The input token count (N) exceeds the maximum number of tokens allowed (M)".
_CONTEXT_LENGTH_MESSAGES = re.compile(
    r"prompt is too long|maximum context length|context length exceeded|context_length_exceeded"
    r"|input token count .* exceeds the maximum", re.IGNORECASE)


def context_length_exceeded(response: requests.Response, message: str) -> bool:
    """Whether a provider's 400 says the request exceeds the model's context window."""
    try:
        error = response.json().get("error")
    except (ValueError, AttributeError):
        error = None
    if isinstance(error, dict) and error.get("code") == "context_length_exceeded":
        return True
    return bool(_CONTEXT_LENGTH_MESSAGES.search(message))


def retry_after_seconds(response: requests.Response) -> float | None:
    """``retry-after-ms`` (OpenAI), else ``Retry-After`` as seconds or an HTTP date."""
    millis = response.headers.get("retry-after-ms")
    if millis:
        try:
            seconds = float(millis) / 1000
        except ValueError:
            seconds = math.nan
        if math.isfinite(seconds):
            return max(0.0, seconds)
    value = response.headers.get("Retry-After")
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return max(0.0, seconds) if math.isfinite(seconds) else None
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())
