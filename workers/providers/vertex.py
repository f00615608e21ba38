"""Google Vertex AI (Gemini chat, text embeddings) behind the OpenAI interfaces.

Vertex takes OAuth2 access tokens, not API keys: a service-account key file (or
Application Default Credentials) is exchanged for a token that lives about an
hour. One adapter serves every thread of a worker, so the credentials are loaded
on first use and refreshed under a lock: one token request, however many callers.
Token calls are bounded (google-auth's own default is 120 s per call) and every
failure becomes ``UpstreamAuthError`` with a message that never holds key material.
"""

from __future__ import annotations

import json
import re
import threading
import time
import uuid

import google.auth
import google.auth.exceptions
import google.auth.transport.requests
import requests
from google.oauth2 import service_account

from shared.errors import UpstreamAuthError, UpstreamError
from workers.providers.base import Provider, register
from workers.translate.gemini import GeminiStreamToChat, chat_request_to_gemini, gemini_response_to_chat
from workers.translate.gemini_embeddings import embeddings_request_to_predict, predict_response_to_embeddings
from workers.translate.reasoning import effort
from workers.translate.refusals import unsupported_for
from workers.upstream import UpstreamRequest, error_message_from

SCOPES = ["https://www.googleapis.com/auth/cloud-platform"]
TOKEN_TIMEOUT = 10.0  # seconds, per token-endpoint call
_PEM = re.compile(r"-----BEGIN[^-]*-----.*?(?:-----END[^-]*-----|$)", re.S)
_MAX_DETAIL = 300
_unsupported = unsupported_for("Vertex AI Gemini models")


def _detail(exc: BaseException) -> str:
    """A short, safe description of an auth failure: no PEM blocks, bounded length."""
    first = exc.args[0] if exc.args else exc
    text = " ".join(_PEM.sub("[key redacted]", str(first)).split())
    return text[:_MAX_DETAIL] or exc.__class__.__name__


class TimeoutRequest(google.auth.transport.requests.Request):
    """google-auth's requests transport with every call bounded by ``timeout`` seconds."""

    def __init__(self, session: requests.Session | None = None, timeout: float = TOKEN_TIMEOUT):
        super().__init__(session)
        self.timeout = timeout

    def __call__(self, url, method="GET", body=None, headers=None, timeout=None, **kwargs):
        if isinstance(timeout, int | float) and not isinstance(timeout, bool):
            timeout = min(timeout, self.timeout)
        else:
            timeout = self.timeout
        return super().__call__(url, method=method, body=body, headers=headers, timeout=timeout, **kwargs)


class VertexChatStream:
    """Vertex SSE events (``data:`` JSON, no event names) -> OpenAI chunks."""

    def __init__(self, translator: GeminiStreamToChat):
        self._translator = translator

    @property
    def usage(self) -> dict | None:
        return self._translator.usage

    def feed(self, event_name: str | None, data: str) -> list[dict]:
        if not data.strip():
            return []
        try:
            chunk = json.loads(data)
        except ValueError:
            raise UpstreamError("The provider sent a stream event that is not JSON.") from None
        if not isinstance(chunk, dict):
            raise UpstreamError("The provider sent a stream event that is not a JSON object.")
        if "error" in chunk:  # Vertex reports a failure after the stream started in-band
            raise UpstreamError(f"Vertex AI failed mid-stream: {error_message_from(chunk)}"[:500])
        return self._translator.feed(chunk)

    def finish(self) -> list[dict]:
        return self._translator.finish()


@register
class VertexProvider(Provider):
    types = ("vertex",)

    def __init__(self, model):
        super().__init__(model)
        self._lock = threading.Lock()
        self._credentials = None
        self._transport: TimeoutRequest | None = None

    # --- URLs ---

    def base_url(self) -> str:
        if self.model.base_url:
            return self.model.base_url.rstrip("/")
        location = self.model.location
        # The "global" location has no regional host.
        host = "aiplatform.googleapis.com" if location == "global" else f"{location}-aiplatform.googleapis.com"
        return f"https://{host}/v1"

    def endpoint(self, method: str) -> str:
        """``method``: generateContent, streamGenerateContent?alt=sse or predict."""
        m = self.model
        return (f"{self.base_url()}/projects/{m.project}/locations/{m.location}"
                f"/publishers/google/models/{m.model}:{method}")

    # --- credentials ---

    def _load_credentials(self):
        path = getattr(self.model, "credentials_file", None)
        name = self.model.name
        try:
            if path:
                return service_account.Credentials.from_service_account_file(path, scopes=SCOPES)
            credentials, _ = google.auth.default(scopes=SCOPES)
            return credentials
        except OSError as exc:
            raise UpstreamAuthError(
                f"Model '{name}': cannot read the Google credentials file '{path}' "
                f"({exc.strerror or exc.__class__.__name__}). This is a gateway configuration problem.") from None
        except (ValueError, KeyError, TypeError, google.auth.exceptions.GoogleAuthError) as exc:
            if path:
                raise UpstreamAuthError(
                    f"Model '{name}': the Google credentials file '{path}' is not a valid service-account "
                    f"key ({_detail(exc)}). This is a gateway configuration problem.") from None
            raise UpstreamAuthError(
                f"Model '{name}': no Google credentials: set credentials_file or configure Application "
                f"Default Credentials ({_detail(exc)}). This is a gateway configuration problem.") from None

    def access_token(self) -> str:
        """A valid access token, fetched or refreshed when needed (once, whatever the concurrency)."""
        with self._lock:
            if self._credentials is None:
                self._credentials = self._load_credentials()  # a failure is not cached: fixing the file heals
            credentials = self._credentials
            if not credentials.valid:
                if self._transport is None:
                    # trust_env stays on: HTTPS_PROXY / REQUESTS_CA_BUNDLE apply to Google's token endpoint.
                    timeout = min(TOKEN_TIMEOUT, float(getattr(self.model, "timeout", TOKEN_TIMEOUT)))
                    self._transport = TimeoutRequest(requests.Session(), timeout)
                try:
                    credentials.refresh(self._transport)
                except (google.auth.exceptions.GoogleAuthError, requests.RequestException, ValueError) as exc:
                    raise UpstreamAuthError(
                        f"Model '{self.model.name}': could not get a Google access token: {_detail(exc)}. "
                        "This is a gateway configuration problem, not your credential.") from None
            return credentials.token

    def headers(self, request_id: str) -> dict[str, str]:
        headers = {"Authorization": f"Bearer {self.access_token()}", "X-Request-Id": request_id}
        quota_project = getattr(self._credentials, "quota_project_id", None)
        if isinstance(quota_project, str) and quota_project:
            headers["x-goog-user-project"] = quota_project  # user ADC bills a quota project
        return headers

    # --- chat ---

    def chat_request(self, body: dict, *, request_id: str, stream: bool = False) -> UpstreamRequest:
        if self.model.reasoning_control == "none" and effort(body.get("reasoning_effort")) is not None:
            # A model with no thinking control (thinkingConfig): even "none" would send a budget of 0.
            if body["reasoning_effort"] != "none":
                raise _unsupported("reasoning_effort", f"model '{self.model.name}' has no reasoning control "
                                                       "(its 'reasoning' setting is none)")
            body = {k: v for k, v in body.items() if k != "reasoning_effort"}
        payload = chat_request_to_gemini(body)  # refuse a bad request before fetching any token
        method = "streamGenerateContent?alt=sse" if stream else "generateContent"
        return UpstreamRequest(self.endpoint(method), payload, self.headers(request_id))

    def chat_response(self, data: dict, *, requested_model: str) -> dict:
        response_id = data.get("responseId") or uuid.uuid4().hex
        return gemini_response_to_chat(data, requested_model=requested_model, created=int(time.time()),
                                       response_id=str(response_id))

    def chat_stream(self, *, requested_model: str, include_usage: bool) -> VertexChatStream:
        translator = GeminiStreamToChat(requested_model, int(time.time()), uuid.uuid4().hex, include_usage)
        return VertexChatStream(translator)

    # --- embeddings ---

    def embeddings_request(self, body: dict, *, request_id: str) -> UpstreamRequest:
        payload = embeddings_request_to_predict(body)
        return UpstreamRequest(self.endpoint("predict"), payload, self.headers(request_id))

    def embeddings_response(self, data: dict, *, requested_model: str) -> dict:
        return predict_response_to_embeddings(data, requested_model=requested_model)
