"""The tokens one request cost, the same for every API.

Each API words its usage differently (OpenAI's ``prompt_tokens``, Responses' ``input_tokens``,
Anthropic's ``input_tokens`` that leaves the cached part out, llama.cpp's
``tokens_evaluated``); ``upstream/formats.py`` reads each into this one value, so limits,
metrics, traces and logs count the same thing whichever API a client speaks.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Usage"]


@dataclass(frozen=True, slots=True)
class Usage:
    #: Every prompt token the backend took, cached ones included.
    prompt: int = 0
    completion: int = 0
    #: Prompt tokens served from the KV cache rather than computed.
    cached: int = 0

    @property
    def total(self) -> int:
        return self.prompt + self.completion

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.prompt + other.prompt,
            self.completion + other.completion,
            self.cached + other.cached,
        )
