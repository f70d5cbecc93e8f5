"""One conversation with a model through a gateway's ``POST /v1/chat/completions``: the
history, the system message, the sampling parameters, and one streamed answer at a time with
its timings (time to first token, tokens per second)."""

from __future__ import annotations

import json
import time
from collections.abc import Generator, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx

from gateway.cli.client import ClientError, GatewayClient

__all__ = ["PARAMETERS", "AnswerStats", "Conversation", "parse_parameter"]

#: ``/set parameter NAME VALUE``: Ollama's names where they differ -> the request field.
PARAMETERS = {
    "temperature": "temperature",
    "top_p": "top_p",
    "top_k": "top_k",
    "min_p": "min_p",
    "seed": "seed",
    "num_predict": "max_tokens",
    "max_tokens": "max_tokens",
    "repeat_penalty": "repeat_penalty",
    "presence_penalty": "presence_penalty",
    "frequency_penalty": "frequency_penalty",
    "stop": "stop",
    "ignore_eos": "ignore_eos",
}


def parse_parameter(name: str, value: str) -> tuple[str, Any]:
    """The request field and typed value for ``/set parameter NAME VALUE``; ValueError if
    the name is unknown or the value does not parse."""
    field_name = PARAMETERS.get(name.lower())
    if field_name is None:
        raise ValueError(f"unknown parameter {name!r}; known: {', '.join(sorted(PARAMETERS))}")
    if field_name == "stop":
        return field_name, value
    if field_name == "ignore_eos":
        if value.lower() not in ("true", "false", "1", "0"):
            raise ValueError(f"{name} takes true or false, not {value!r}")
        return field_name, value.lower() in ("true", "1")
    try:
        number: float = float(value)
    except ValueError:
        raise ValueError(f"{name} takes a number, not {value!r}") from None
    if field_name in ("top_k", "seed", "max_tokens"):
        return field_name, int(number)
    return field_name, number


@dataclass
class AnswerStats:
    started: float
    first_token: float | None = None
    finished: float | None = None
    #: From the final chunk's ``usage`` when the server sends one, else the chunks counted.
    completion_tokens: int = 0
    prompt_tokens: int | None = None

    def summary(self) -> str:
        end = self.finished or time.monotonic()
        parts = [f"total {end - self.started:.2f} s"]
        if self.first_token is not None:
            parts.append(f"time to first token {self.first_token - self.started:.2f} s")
            generating = end - self.first_token
            if self.completion_tokens > 1 and generating > 0:
                rate = (self.completion_tokens - 1) / generating
                parts.append(f"{rate:.1f} tokens/s")
        if self.prompt_tokens is not None:
            parts.append(f"prompt {self.prompt_tokens} tokens")
        parts.append(f"answer {self.completion_tokens} tokens")
        return " · ".join(parts)


@dataclass
class Conversation:
    client: GatewayClient
    model: str
    system: str | None = None
    parameters: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, str]] = field(default_factory=list)

    def clear(self) -> None:
        self.history.clear()

    def body(self, prompt: str) -> dict[str, Any]:
        messages = [{"role": "system", "content": self.system}] if self.system else []
        messages += [*self.history, {"role": "user", "content": prompt}]
        extra = dict(self.parameters)
        if "stop" in extra:
            extra["stop"] = [extra["stop"]]
        return {
            "model": self.model,
            "messages": messages,
            "stream": True,
            "stream_options": {"include_usage": True},
            **extra,
        }

    def ask(self, prompt: str, stats: AnswerStats) -> Generator[str, None, None]:
        """Stream the answer to ``prompt``, piece by piece. The turn joins the history only
        when the answer is complete: one stopped with Ctrl-C leaves no trace."""
        pieces: list[str] = []
        try:
            with self.client.http.stream(
                "POST", "/v1/chat/completions", json=self.body(prompt), timeout=None
            ) as response:
                if not response.is_success:
                    response.read()
                    self.client.check(response)
                for text in self._pieces(response, stats):
                    pieces.append(text)
                    yield text
        except httpx.TransportError as exc:
            raise self.client.unreachable(exc) from None
        stats.finished = time.monotonic()
        self.history += [
            {"role": "user", "content": prompt},
            {"role": "assistant", "content": "".join(pieces)},
        ]

    @staticmethod
    def _pieces(response: httpx.Response, stats: AnswerStats) -> Iterator[str]:
        counted = 0
        for line in response.iter_lines():
            if not line.startswith("data:"):
                continue
            data = line[5:].strip()
            if data == "[DONE]":
                break
            event = json.loads(data)
            if "error" in event:
                error = event["error"]
                message = error.get("message") if isinstance(error, dict) else error
                raise ClientError(f"the answer broke off: {message}")
            usage = event.get("usage")
            if usage:
                stats.completion_tokens = int(usage.get("completion_tokens") or counted)
                stats.prompt_tokens = usage.get("prompt_tokens")
            for choice in event.get("choices") or []:
                text = (choice.get("delta") or {}).get("content")
                if text:
                    if stats.first_token is None:
                        stats.first_token = time.monotonic()
                    counted += 1
                    stats.completion_tokens = max(stats.completion_tokens, counted)
                    yield text
