"""One API request as telemetry sees it: its id, its spans, its timings and its log line.

The edge middleware (``api/edge.py``), around the whole ASGI app, gives every answer —
errors and unknown paths too — an ``x-request-id`` (the client's, or a new one:
:func:`request_id_from`). For API requests (:func:`is_api_path`) it also opens a
:class:`RequestTelemetry` on ``scope["state"]["telemetry"]`` for the request path to fill
in, which writes one JSON log line once the request is over: when the answer has been sent
*and* the exchange with the backend (if one was opened) is accounted.
"""

from __future__ import annotations

import contextlib
import logging
import random
import re
import time
from collections.abc import Callable, Iterator, Mapping, MutableMapping
from typing import Any, Protocol

from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from gateway.telemetry.tracing import Tracing
from gateway.usage import Usage

__all__ = ["Recorder", "RequestTelemetry", "is_api_path", "request_headers", "request_id_from"]

REQUEST_ID_HEADER = "x-request-id"
_VALID_REQUEST_ID = re.compile(r"[A-Za-z0-9._:\-]{1,128}")
_OPERATIONS = {
    "/v1/chat/completions": "chat",
    "/v1/completions": "text_completion",
    "/v1/embeddings": "embeddings",
    "/v1/responses": "chat",
    "/v1/messages": "chat",
    "/completion": "text_completion",
    "/infill": "text_completion",
    "/embedding": "embeddings",
    "/api/chat": "chat",
    "/api/generate": "text_completion",
    "/api/embed": "embeddings",
    "/api/embeddings": "embeddings",
}
#: The paths of the APIs clients speak: each request on them gets a log line and a span.
API_PATHS = (
    "/v1/",
    "/api/",
    "/completion",
    "/infill",
    "/embedding",
    "/tokenize",
    "/detokenize",
    "/apply-template",
    "/rerank",
    "/reranking",
)

request_log = logging.getLogger("gateway.requests")


def is_api_path(path: str) -> bool:
    return path.startswith(API_PATHS)


def request_headers(scope: Mapping[str, Any], *, every: bool = True) -> dict[str, str]:
    """An ASGI request's headers by lowercase name (the last of a repeated one); without
    ``every``, only ``x-request-id`` (all the request needs when no trace continues)."""
    raw = scope["headers"]
    if every:
        return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in raw}
    found = {}
    for name, value in raw:
        if len(name) == 12 and name.lower() == b"x-request-id":
            found[REQUEST_ID_HEADER] = value.decode("latin-1")
    return found


def request_id_from(headers: Mapping[str, str]) -> str:
    """The client's ``x-request-id`` if it is a sane token, else a new one."""
    given = headers.get(REQUEST_ID_HEADER)
    return given if given and _VALID_REQUEST_ID.fullmatch(given) else new_request_id()


def new_request_id() -> str:
    """32 random hex digits. No secret (the client is told it, logs show it): drawn without
    the system call ``uuid4`` makes for each."""
    return f"{random.getrandbits(128):032x}"


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 1)


class Recorder(Protocol):
    """Told of each request as it reaches a backend and once it is over (the console's
    :class:`~gateway.telemetry.recent.RecentRequests`)."""

    def opened(self, telemetry: RequestTelemetry) -> None: ...

    def finished(self, telemetry: RequestTelemetry, fields: Mapping[str, Any]) -> None: ...


class RequestTelemetry:
    """Filled in by the request path; emits its log line and ends its span when released."""

    def __init__(
        self,
        request_id: str,
        *,
        tracing: Tracing,
        method: str = "POST",
        path: str = "",
        headers: Mapping[str, str] | None = None,
        clock: Callable[[], float] = time.monotonic,
        recorder: Recorder | None = None,
        state: Mapping[str, Any] | None = None,
    ) -> None:
        self.request_id = request_id
        self.recorder = recorder
        #: The request's ``scope["state"]``: where the auth guard leaves the key's name.
        self.state: Mapping[str, Any] = state if state is not None else {}
        self.tracing = tracing
        self.clock = clock
        self.path = path
        self.started_at = clock()
        self.operation = _OPERATIONS.get(path)
        self.span: Span | None = tracing.start_server_span(
            f"{method} {path}",
            headers or {},
            {
                "http.request.method": method,
                "url.path": path,
                "llama_gateway.request_id": request_id,
            },
        )
        self._upstream: Span | None = None
        #: Seconds spent in each phase (``auth``, ``limits``, ``queue``).
        self.phases: dict[str, float] = {}
        self.model: str | None = None
        self.key: str | None = None
        self.backend: str | None = None
        self.slot: int | None = None
        #: The outcome as the gateway judged it (499 for a client gone mid-stream); the
        #: HTTP status is used when the request path set none.
        self.status: int | None = None
        self.http_status: int | None = None
        self.usage: Usage | None = None
        self.finish_reasons: list[str] = []
        self.first_byte_at: float | None = None
        self._holds = 1
        self._done = False
        #: How to close what the request holds (its exchanges, by exchange) if its client
        #: leaves before the answer has started (``api/departures.py``); each is safe to
        #: call twice, and forgotten once its exchange is closed.
        self.closers: dict[object, Callable[[], object]] = {}

    @classmethod
    def detached(cls, request_id: str | None = None) -> RequestTelemetry:
        """Telemetry for a request that came without the middleware: no span, no log line."""
        telemetry = cls(request_id or new_request_id(), tracing=Tracing(None))
        telemetry._done = True
        return telemetry

    @classmethod
    def open(
        cls,
        scope: MutableMapping[str, Any],
        headers: Mapping[str, str],
        request_id: str,
        *,
        tracing: Tracing,
        clock: Callable[[], float] = time.monotonic,
        recorder: Recorder | None = None,
    ) -> RequestTelemetry:
        """The telemetry of the API request ``scope``, left on its state for the path."""
        state = scope.setdefault("state", {})
        telemetry = cls(
            request_id,
            tracing=tracing,
            method=scope["method"],
            path=scope["path"],
            headers=headers,
            clock=clock,
            recorder=recorder,
            state=state,
        )
        state["telemetry"] = telemetry
        return telemetry

    def answered(self, scope: MutableMapping[str, Any]) -> None:
        """The app is done with the request (its answer sent or failed): what the path left
        on the state is read, and the request ends once its exchange, if any, is closed."""
        state = scope.get("state", {})
        self.key = self.key or state.get("key")
        if self.model is None:
            self.model = state.get("model")
        self.release()
        # The state and the telemetry point at each other: without this edge the request's
        # objects go with their last reference, not at the next collection.
        state.pop("telemetry", None)

    @property
    def key_name(self) -> str | None:
        """The caller's key name, known once the auth guard ran (before the request ends)."""
        return self.key or self.state.get("key")

    # -- hooks for the request path ---------------------------------------------------------

    def describe(self, *, model: str, max_tokens: int | None, stream: bool) -> None:
        """The request as parsed: the model asked for and its limits."""
        self.model = self.model or model
        if self.span is not None:
            attributes: dict[str, Any] = {"gen_ai.request.model": model}
            if self.operation:
                attributes["gen_ai.operation.name"] = self.operation
            if max_tokens is not None:
                attributes["gen_ai.request.max_tokens"] = max_tokens
            attributes["llama_gateway.stream"] = stream
            self.span.set_attributes(attributes)

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        """Time a step of the request (``auth``, ``limits``, ``queue``) as a child span."""
        span = self.tracing.start_child(self.span, name)
        started = self.clock()
        try:
            yield
        except BaseException as exc:
            if span is not None:
                span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
            raise
        finally:
            self.phases[name] = self.phases.get(name, 0.0) + self.clock() - started
            if span is not None:
                span.end()

    def upstream_headers(self, backend: str, *, slot: int | None = None) -> dict[str, str]:
        """Start the upstream span; the headers to send the backend (request id, traceparent)."""
        self.end_upstream()
        self.backend, self.slot = backend, slot
        headers = {"X-Request-Id": self.request_id}
        if self.span is not None:
            attributes: dict[str, Any] = {"llama_gateway.backend": backend}
            if self.operation:
                attributes["gen_ai.operation.name"] = self.operation
            if self.model:
                attributes["gen_ai.request.model"] = self.model
            if slot is not None:
                attributes["llama_gateway.slot"] = slot
            host, _, port = backend.rpartition(":")
            if port.isdigit():
                attributes["server.address"], attributes["server.port"] = host, int(port)
            name = f"{self.operation or 'upstream'} {self.model or ''}".strip()
            self._upstream = self.tracing.start_child(
                self.span, name, kind=SpanKind.CLIENT, attributes=attributes
            )
            self.tracing.inject(self._upstream, headers)
        if self.recorder is not None:
            self.recorder.opened(self)
        return headers

    def end_upstream(self, error: str | None = None) -> None:
        """The upstream call is over (``error``: it failed before an answer)."""
        if self._upstream is not None:
            if error is not None:
                self._upstream.set_status(Status(StatusCode.ERROR, error))
            self._upstream.end()
            self._upstream = None

    def hold(self) -> None:
        """An exchange with a backend opened: the request is over only once it is closed."""
        self._holds += 1

    def exchange_closed(
        self,
        *,
        status: int,
        model: str,
        key: str,
        backend: str,
        usage: Usage | None,
        finish_reasons: list[str],
        first_byte_at: float | None,
        response_model: str | None = None,
    ) -> None:
        """The exchange ended (complete or not) and is accounted."""
        self.status, self.model, self.key, self.backend = status, model, key, backend
        self.usage = usage
        self.finish_reasons = list(finish_reasons)
        self.first_byte_at = first_byte_at
        if self._upstream is not None:
            self._upstream.set_attributes(self._usage_attributes(response_model or model))
        self.end_upstream(None if status < 500 else f"status {status}")
        if self.span is not None:
            self.span.set_attributes(self._usage_attributes(response_model or model))
        self.release()

    def release(self) -> None:
        self._holds -= 1
        if self._holds <= 0 and not self._done:
            self._done = True
            self._finish()

    # -- the end ----------------------------------------------------------------------------

    def _usage_attributes(self, response_model: str) -> dict[str, Any]:
        usage = self.usage
        attributes: dict[str, Any] = {"gen_ai.response.model": response_model}
        if usage is not None:
            attributes["gen_ai.usage.input_tokens"] = usage.prompt
            attributes["gen_ai.usage.output_tokens"] = usage.completion
        attributes["llama_gateway.cached_tokens"] = self.cached_tokens
        if self.finish_reasons:
            attributes["gen_ai.response.finish_reasons"] = self.finish_reasons
        if self.backend:
            attributes["llama_gateway.backend"] = self.backend
        if self.slot is not None:
            attributes["llama_gateway.slot"] = self.slot
        return attributes

    @property
    def cached_tokens(self) -> int:
        return self.usage.cached if self.usage is not None else 0

    def _finish(self) -> None:
        now = self.clock()
        status = self.status or self.http_status or 500
        self.end_upstream()
        if self.span is not None:
            self.span.set_attribute("http.response.status_code", status)
            if status >= 500:
                self.span.set_status(Status(StatusCode.ERROR, f"status {status}"))
            self.span.end()
        first = self.first_byte_at
        fields = {
            "request_id": self.request_id,
            "path": self.path,
            "key": self.key,
            "model": self.model,
            "backend": self.backend,
            "slot": self.slot,
            "status": status,
            "prompt_tokens": self.usage.prompt if self.usage is not None else 0,
            "completion_tokens": self.usage.completion if self.usage is not None else 0,
            "cached_tokens": self.cached_tokens,
            "finish_reasons": self.finish_reasons or None,
            "queue_ms": _ms(self.phases.get("queue")),
            "ttft_ms": _ms(None if first is None else first - self.started_at),
            "total_ms": _ms(now - self.started_at),
        }
        request_log.info("request", extra=fields)
        if self.recorder is not None:
            try:
                self.recorder.finished(self, fields)
            except Exception:  # the console's buffer must never fail a request
                request_log.exception("recording request %s failed", self.request_id)
