"""How each API's answers carry their usage, finish reasons, errors and end — whole or
streamed — as llama-server writes them:

- OpenAI chat, completions, embeddings, rerank: ``usage.prompt_tokens`` …; streams end with
  ``data: [DONE]`` and carry usage in a last chunk, on request;
- OpenAI Responses: ``usage.input_tokens`` …; the ``response.completed`` event ends a stream;
- Anthropic Messages: ``input_tokens`` *without* the cached part, ``cache_read_input_tokens``;
  streamed in ``message_start`` and ``message_delta``, ended by ``message_stop``;
- llama.cpp's ``/completion`` and ``/infill``: ``tokens_evaluated``, ``tokens_predicted``,
  ``timings.cache_n``; the event with ``"stop": true`` ends a stream.

Each becomes one :class:`~gateway.usage.Usage`. The relay (``sse.py``) decodes only events
that contain one of a format's :attr:`AnswerFormat.markers`.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from typing import Any

import msgspec

from gateway.requests import Endpoint
from gateway.usage import Usage

__all__ = ["AnswerFormat", "StreamOutcome", "format_of"]


class StreamOutcome:
    """What a relayed stream carried, filled in as it passes."""

    __slots__ = ("done", "error", "events", "finish_reasons", "first_byte_at", "reported", "usage")

    def __init__(self) -> None:
        self.usage: Usage | None = None
        #: The usage as the API words it, merged across events (Anthropic splits it).
        self.reported: dict[str, Any] = {}
        self.finish_reasons: list[str] = []
        self.error: dict[str, Any] | None = None
        self.done = False  # saw the format's last event
        self.first_byte_at: float | None = None
        #: Events relayed: what a stream cut before its usage is counted by.
        self.events = 0


def _int(value: Any) -> int:
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0


class AnswerFormat:
    """OpenAI's chat and text completions, embeddings and rerank."""

    markers: tuple[bytes, ...] = (b'"usage"', b'"error"', b'"finish_reason":"', b"data: [DONE]")

    #: Where the answer's ``usage`` keeps its prompt, completion and cached counts.
    _fields = ("prompt_tokens", "completion_tokens", "prompt_tokens_details")

    def usage(self, answer: Any) -> Usage | None:
        usage = answer.get("usage") if isinstance(answer, Mapping) else None
        if not isinstance(usage, Mapping):
            return None
        prompt, completion, details_key = self._fields
        details = usage.get(details_key) or {}
        cached = details.get("cached_tokens") if isinstance(details, Mapping) else 0
        return Usage(_int(usage.get(prompt)), _int(usage.get(completion)), _int(cached))

    def finish_reasons(self, answer: Any) -> list[str]:
        choices = answer.get("choices") if isinstance(answer, Mapping) else None
        return [c["finish_reason"] for c in choices or () if c.get("finish_reason")]

    def inspect(
        self, name: bytes | None, data: bytes, outcome: StreamOutcome, drop_usage: bool
    ) -> bool:
        """Read one event (its ``event:`` name and ``data:`` payload) into ``outcome``;
        ``False`` drops it from the relayed stream."""
        if data == b"[DONE]":
            outcome.done = True
            return True
        event = _decode(data)
        return True if event is None else self.read(event, outcome, drop_usage)

    def read(self, event: dict[str, Any], outcome: StreamOutcome, drop_usage: bool) -> bool:
        """:meth:`inspect` for a decoded event."""
        if "error" in event:
            outcome.error = event["error"]
        outcome.finish_reasons += self.finish_reasons(event)
        if event.get("usage"):
            outcome.usage = self.usage(event)
            if drop_usage and not event.get("choices"):
                return False  # the client did not ask for this chunk; the gateway did
        return True

    def opening(self, events: bytes, model: str) -> bytes:
        """A stream's first events (complete ones) as the client's SDK needs them: as they
        are, but for Anthropic's."""
        return events

    def error_event(self, message: str, type_: str, code: str | None) -> bytes:
        body = {"error": {"message": message, "type": type_, "param": None, "code": code}}
        return b"data: " + msgspec.json.encode(body) + b"\n\n"


class ResponsesFormat(AnswerFormat):
    markers = (b'"response.completed"', b'"response.failed"', b'"response.incomplete"', b'"error"')
    _LAST = ("response.completed", "response.failed", "response.incomplete")

    _fields = ("input_tokens", "output_tokens", "input_tokens_details")

    def finish_reasons(self, answer: Any) -> list[str]:
        return _one(answer, "status")

    def read(self, event: dict[str, Any], outcome: StreamOutcome, drop_usage: bool) -> bool:
        kind = event.get("type")
        if kind in self._LAST:
            outcome.done = True
            response = event.get("response") or {}
            outcome.usage = self.usage(response)
            outcome.finish_reasons += self.finish_reasons(response)
        elif kind == "error" or "error" in event:
            outcome.error = event.get("error") or event
        return True

    def error_event(self, message: str, type_: str, code: str | None) -> bytes:
        body = {"type": "error", "code": code or type_, "message": message, "param": None}
        return b"event: error\ndata: " + msgspec.json.encode(body) + b"\n\n"


class AnthropicFormat(AnswerFormat):
    markers = (b'"usage"', b'"message_stop"', b'"type":"error"')

    def usage(self, answer: Any) -> Usage | None:
        usage = answer.get("usage") if isinstance(answer, Mapping) else None
        if not isinstance(usage, Mapping):
            return None
        read = _int(usage.get("cache_read_input_tokens"))
        written = _int(usage.get("cache_creation_input_tokens"))
        # Anthropic's input_tokens leaves out what was read from (or written to) the cache.
        prompt = _int(usage.get("input_tokens")) + read + written
        return Usage(prompt, _int(usage.get("output_tokens")), read)

    def finish_reasons(self, answer: Any) -> list[str]:
        return _one(answer, "stop_reason")

    def read(self, event: dict[str, Any], outcome: StreamOutcome, drop_usage: bool) -> bool:
        kind = event.get("type")
        if kind == "message_start":
            outcome.reported.update((event.get("message") or {}).get("usage") or {})
        elif kind == "message_delta":
            outcome.reported.update(event.get("usage") or {})
            outcome.finish_reasons += self.finish_reasons(event.get("delta"))
        elif kind == "message_stop":
            outcome.done = True
        elif kind == "error":
            outcome.error = event.get("error") or event
        if outcome.reported:
            outcome.usage = self.usage({"usage": outcome.reported})
        return True

    def opening(self, events: bytes, model: str) -> bytes:
        """A stream that does not start with ``message_start`` gets one. llama-server sends
        it with the first token's text, and a first token that is only part of a character (an
        emoji's first bytes) has none, so it never comes; Anthropic's SDKs cannot build the
        message without it. Its usage is unknown here: zeros, and the request is accounted
        with the prompt tokens llama-server did not report (none)."""
        if events.startswith((b"event: message_start", b"event: error")):
            return events
        start = {
            "type": "message_start",
            "message": {
                "id": "msg_" + secrets.token_hex(12),
                "type": "message",
                "role": "assistant",
                "content": [],
                "model": model,
                "stop_reason": None,
                "stop_sequence": None,
                "usage": {"input_tokens": 0, "output_tokens": 0},
            },
        }
        return b"event: message_start\ndata: " + msgspec.json.encode(start) + b"\n\n" + events

    def error_event(self, message: str, type_: str, code: str | None) -> bytes:
        kind = "overloaded_error" if type_ == "service_unavailable_error" else "api_error"
        body = {"type": "error", "error": {"type": kind, "message": message}}
        return b"event: error\ndata: " + msgspec.json.encode(body) + b"\n\n"


class NativeFormat(AnswerFormat):
    """llama.cpp's own ``/completion`` and ``/infill``."""

    markers = (b'"stop":true', b'"error"')

    def usage(self, answer: Any) -> Usage | None:
        if not isinstance(answer, Mapping) or "tokens_evaluated" not in answer:
            return None
        timings = answer.get("timings") or {}
        return Usage(
            _int(answer.get("tokens_evaluated")),
            _int(answer.get("tokens_predicted")),
            _int(timings.get("cache_n") if isinstance(timings, Mapping) else 0),
        )

    def finish_reasons(self, answer: Any) -> list[str]:
        return _one(answer, "stop_type")

    def read(self, event: dict[str, Any], outcome: StreamOutcome, drop_usage: bool) -> bool:
        if "error" in event:
            outcome.error = event["error"]
        if event.get("stop") is True:
            outcome.done = True
            outcome.usage = self.usage(event)
            outcome.finish_reasons += self.finish_reasons(event)
        return True


class NoUsageFormat(AnswerFormat):
    """Answers that report no tokens (tokenize, native embeddings): accounted by estimate."""

    def usage(self, answer: Any) -> Usage | None:
        return None


_OPENAI, _NONE = AnswerFormat(), NoUsageFormat()
_FORMATS: dict[Endpoint, AnswerFormat] = {
    Endpoint.RESPONSES: ResponsesFormat(),
    Endpoint.MESSAGES: AnthropicFormat(),
    Endpoint.COMPLETION: NativeFormat(),
    Endpoint.INFILL: NativeFormat(),
    Endpoint.EMBEDDING: _NONE,
    Endpoint.TOKENIZE: _NONE,
    Endpoint.DETOKENIZE: _NONE,
    Endpoint.APPLY_TEMPLATE: _NONE,
    Endpoint.RESPONSES_INPUT_TOKENS: _NONE,
    Endpoint.MESSAGES_COUNT_TOKENS: _NONE,
}


def format_of(endpoint: Endpoint) -> AnswerFormat:
    return _FORMATS.get(endpoint, _OPENAI)


def _one(answer: Any, field: str) -> list[str]:
    """The finish reason an answer keeps in ``field``, as a list of one (or none)."""
    reason = answer.get(field) if isinstance(answer, Mapping) else None
    return [reason] if isinstance(reason, str) and reason else []


def _decode(data: bytes) -> dict[str, Any] | None:
    if not data.startswith(b"{"):
        return None
    try:
        event = msgspec.json.decode(data)
    except msgspec.DecodeError:
        return None
    return event if isinstance(event, dict) else None
