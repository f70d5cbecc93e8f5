"""llama-server's OpenAI answers read back into Ollama's: the server-sent events of a chat or
completion stream become ``/api/chat`` / ``/api/generate`` NDJSON objects (``done: false``
pieces, then one ``done: true`` object with the counts and durations), or one whole object
for ``stream: false``; an embeddings answer becomes ``/api/embed``'s.

Counts come from the stream's ``usage`` — the very numbers the gateway accounts — and
durations from llama-server's ``timings`` (milliseconds there, nanoseconds in Ollama).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import msgspec

from gateway.errors import GatewayError

__all__ = [
    "AnswerTranslator",
    "StreamBroke",
    "created_at",
    "embed_answer",
    "ndjson",
]

_EVENT_END = b"\n\n"
_DATA = b"data: "
#: OpenAI finish reasons as Ollama's ``done_reason`` (a tool call ends with "stop" there).
_DONE_REASONS = {"tool_calls": "stop", "function_call": "stop", "content_filter": "stop"}
#: llama.cpp's ``stop_type`` as Ollama's ``done_reason``.
_NATIVE_STOPS = {"limit": "length", "eos": "stop", "word": "stop"}


class StreamBroke(GatewayError):
    """The answer broke off after it began (the relay's error event): for ``stream: false``
    nothing has reached the client yet, so it gets this status and message instead."""

    status = 502
    type = "upstream_error"


def created_at() -> str:
    """Now, as Ollama writes ``created_at`` (RFC 3339 in UTC)."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def ndjson(obj: dict[str, Any]) -> bytes:
    return msgspec.json.encode(obj) + b"\n"


def _ns(seconds: float) -> int:
    return max(0, round(seconds * 1e9))


class AnswerTranslator:
    """Reads the SSE bytes of one chat or text completion stream and writes the Ollama
    objects they make: ``/api/chat``'s (``chat=True``) or ``/api/generate``'s. :meth:`feed`
    returns the pieces to send now; :meth:`final` the closing object; :meth:`whole`
    everything as one object."""

    def __init__(
        self,
        model: str,
        *,
        chat: bool,
        started_at: float,
        load_seconds: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.model = model
        self.chat = chat
        self.started_at = started_at
        self.load_seconds = load_seconds
        self.clock = clock
        self.usage: dict[str, Any] = {}
        self.timings: dict[str, Any] = {}
        self.finish_reason: str | None = None
        #: The error event's message, if the stream broke off.
        self.error: str | None = None
        self.content: list[str] = []
        self.thinking: list[str] = []
        self.logprobs: list[Any] = []
        self._calls: dict[int, dict[str, Any]] = {}
        self._calls_sent = False
        self._pending = b""
        self._sent_at = started_at  # the request reached the backend
        self._first_token_at: float | None = None

    def sent(self) -> None:
        """The request has been handed to a backend: prompt time counts from here."""
        self._sent_at = self.clock()

    # -- reading the stream -----------------------------------------------------------------

    def feed(self, piece: bytes) -> list[dict[str, Any]]:
        self._pending += piece
        end = self._pending.rfind(_EVENT_END)
        if end < 0:
            return []
        events, self._pending = self._pending[:end], self._pending[end + 2 :]
        out: list[dict[str, Any]] = []
        for event in events.split(_EVENT_END):
            data = _event_data(event)
            if data is not None:
                out.extend(self._event(data))
        return out

    def _event(self, data: dict[str, Any]) -> list[dict[str, Any]]:
        error = data.get("error")
        if error is not None:
            message = error.get("message") if isinstance(error, dict) else str(error)
            self.error = message or "the backend failed while answering"
            return [{"error": self.error}]
        if "choices" not in data and "content" in data:
            return self._native(data)
        if isinstance(data.get("usage"), dict):
            self.usage = data["usage"]
        if isinstance(data.get("timings"), dict):
            self.timings = data["timings"]
        out = []
        for choice in data.get("choices") or ():
            if choice.get("index", 0) != 0:
                continue  # Ollama answers one choice
            piece = self._choice(choice)
            if piece is not None:
                out.append(piece)
            if choice.get("finish_reason"):
                self.finish_reason = choice["finish_reason"]
                calls = self._tool_call_piece()
                if calls is not None:
                    out.append(calls)
        return out

    def _native(self, data: dict[str, Any]) -> list[dict[str, Any]]:
        """An event of llama.cpp's own stream (``/infill``): its text in ``content``, and in
        the last one (``stop: true``) the counts and why it stopped."""
        if data.get("stop"):
            self.usage = {
                "prompt_tokens": data.get("tokens_evaluated") or 0,
                "completion_tokens": data.get("tokens_predicted") or 0,
            }
            if isinstance(data.get("timings"), dict):
                self.timings = data["timings"]
            self.finish_reason = _NATIVE_STOPS.get(data.get("stop_type") or "", "stop")
        piece = self._choice({"text": data.get("content") or ""})
        return [piece] if piece is not None else []

    def _choice(self, choice: dict[str, Any]) -> dict[str, Any] | None:
        if "delta" in choice:  # a chat completion (also what a templated generate sends)
            delta = choice.get("delta") or {}
            text = delta.get("content") or ""
            thinking = delta.get("reasoning_content") or ""
            for call in delta.get("tool_calls") or ():
                self._add_call(call)
        else:  # a text completion (a raw generate)
            text, thinking = choice.get("text") or "", ""
        logprobs = (choice.get("logprobs") or {}).get("content") or []
        if not (text or thinking or logprobs):
            return None
        if self._first_token_at is None:
            self._first_token_at = self.clock()
        self.content.append(text)
        self.thinking.append(thinking)
        self.logprobs.extend(logprobs)
        piece = self._head()
        self._put_text(piece, text, thinking)
        if logprobs:
            piece["logprobs"] = logprobs
        piece["done"] = False
        return piece

    def _add_call(self, call: dict[str, Any]) -> None:
        """OpenAI streams a tool call in fragments (its arguments a JSON string in pieces);
        Ollama sends each call whole, with its arguments as an object."""
        slot = self._calls.setdefault(
            int(call.get("index") or 0), {"id": None, "name": "", "arguments": ""}
        )
        if call.get("id"):
            slot["id"] = call["id"]
        function = call.get("function") or {}
        slot["name"] += function.get("name") or ""
        slot["arguments"] += function.get("arguments") or ""

    def tool_calls(self) -> list[dict[str, Any]]:
        calls = []
        for index, slot in sorted(self._calls.items()):
            try:
                arguments = msgspec.json.decode(slot["arguments"] or "{}")
            except msgspec.DecodeError:
                arguments = slot["arguments"]  # not JSON: handed over as the model wrote it
            function = {"index": index, "name": slot["name"], "arguments": arguments}
            call: dict[str, Any] = {"function": function}
            if slot["id"]:
                call["id"] = slot["id"]
            calls.append(call)
        return calls

    def _tool_call_piece(self) -> dict[str, Any] | None:
        if not self._calls or self._calls_sent or not self.chat:
            return None
        self._calls_sent = True
        piece = self._head()
        piece["message"] = {"role": "assistant", "content": "", "tool_calls": self.tool_calls()}
        piece["done"] = False
        return piece

    # -- writing the answer -----------------------------------------------------------------

    def _head(self) -> dict[str, Any]:
        return {"model": self.model, "created_at": created_at()}

    def _put_text(self, obj: dict[str, Any], text: str, thinking: str) -> None:
        if self.chat:
            message: dict[str, Any] = {"role": "assistant", "content": text}
            if thinking:
                message["thinking"] = thinking
            obj["message"] = message
        else:
            obj["response"] = text
            if thinking:
                obj["thinking"] = thinking

    def final(self) -> dict[str, Any]:
        """The ``done: true`` object that ends a stream: reason, counts, durations."""
        obj = self._head()
        self._put_text(obj, "", "")
        obj.update(self._stats())
        return obj

    def whole(self) -> dict[str, Any]:
        """The answer of a ``stream: false`` request, in one object."""
        if self.error is not None:
            raise StreamBroke(self.error)
        obj = self._head()
        self._put_text(obj, "".join(self.content), "".join(self.thinking))
        if self.chat and self._calls:
            obj["message"]["tool_calls"] = self.tool_calls()
        if self.logprobs:
            obj["logprobs"] = self.logprobs
        obj.update(self._stats())
        return obj

    def _stats(self) -> dict[str, Any]:
        now = self.clock()
        reason = self.finish_reason or "stop"
        prompt_ms, predicted_ms = self.timings.get("prompt_ms"), self.timings.get("predicted_ms")
        if isinstance(prompt_ms, int | float) and isinstance(predicted_ms, int | float):
            prompt_s, eval_s = prompt_ms / 1000, predicted_ms / 1000
        else:  # a backend without timings: the gateway's own clock
            first = self._first_token_at or now
            prompt_s, eval_s = first - self._sent_at, now - first
        return {
            "done": True,
            "done_reason": _DONE_REASONS.get(reason, reason),
            "total_duration": _ns(now - self.started_at),
            "load_duration": _ns(self.load_seconds),
            "prompt_eval_count": int(self.usage.get("prompt_tokens") or 0),
            "prompt_eval_duration": _ns(prompt_s),
            "eval_count": int(self.usage.get("completion_tokens") or 0),
            "eval_duration": _ns(eval_s),
        }


def _event_data(event: bytes) -> dict[str, Any] | None:
    """The JSON object of one ``data:`` event; ``None`` for ``[DONE]``, comments, others."""
    event = event.strip(b"\n")
    if not event.startswith(_DATA) or event.startswith(b"data: [DONE]"):
        return None
    try:
        data = msgspec.json.decode(event[len(_DATA) :])
    except msgspec.DecodeError:
        return None
    return data if isinstance(data, dict) else None


def embed_answer(
    model: str,
    answer: bytes,
    *,
    started_at: float,
    load_seconds: float,
    dimensions: int | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> dict[str, Any]:
    """``/api/embed``'s answer from an OpenAI embeddings answer. Ollama returns unit vectors;
    llama-server's OpenAI route already normalizes, and a vector cut to ``dimensions`` is
    normalized again, as Ollama does."""
    decoded = msgspec.json.decode(answer)
    rows = sorted(decoded.get("data") or (), key=lambda row: row.get("index", 0))
    vectors = [row["embedding"] for row in rows]
    if dimensions is not None:
        vectors = [_unit(vector[:dimensions]) for vector in vectors]
    usage = decoded.get("usage") or {}
    return {
        "model": model,
        "embeddings": vectors,
        "total_duration": _ns(clock() - started_at),
        "load_duration": _ns(load_seconds),
        "prompt_eval_count": int(usage.get("prompt_tokens") or 0),
    }


def _unit(vector: list[float]) -> list[float]:
    norm = math.sqrt(sum(x * x for x in vector))
    return [x / norm for x in vector] if norm else vector
