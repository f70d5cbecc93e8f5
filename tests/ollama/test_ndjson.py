"""The raw NDJSON of ``/api/chat`` and ``/api/generate``, line by line: every line one JSON
object, exactly one ``done: true`` and it comes last, and its counts are the very tokens the
gateway accounts (its ``/metrics`` counters)."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from tests.ollama.conftest import HI, MODEL
from tests.support.processes import Gateway
from tests.support.runners import wait_for

pytestmark = pytest.mark.llama

_PROMPT = "llama_gateway_prompt_tokens_total"
_COMPLETION = "llama_gateway_completion_tokens_total"


def _lines(gateway: Gateway, path: str, body: dict[str, Any]) -> list[dict[str, Any]]:
    with httpx.stream("POST", f"{gateway.url}{path}", json=body, timeout=120) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("application/x-ndjson")
        raw = [line for line in response.iter_lines()]
    assert raw and all(raw), "every line carries an object"
    return [json.loads(line) for line in raw]


def _counters(gateway: Gateway) -> tuple[float, float]:
    return (
        gateway.metric(_PROMPT, model=MODEL),
        gateway.metric(_COMPLETION, model=MODEL),
    )


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/api/chat", {"messages": HI}),
        ("/api/generate", {"prompt": "Why is the sky blue?"}),
        ("/api/generate", {"prompt": "The sky is", "raw": True}),
    ],
)
def test_every_line_parses_one_done_and_its_counts_are_the_accounted_ones(
    gateway: Gateway, path: str, body: dict[str, Any]
) -> None:
    before = _counters(gateway)
    lines = _lines(gateway, path, {"model": MODEL, "options": {"num_predict": 12}, **body})
    done = [line for line in lines if line["done"]]
    assert len(done) == 1 and lines[-1] is done[0]
    final = done[0]
    assert "error" not in final and final["done_reason"] in ("stop", "length")
    for key in ("total_duration", "load_duration", "prompt_eval_duration", "eval_duration"):
        assert isinstance(final[key], int) and final[key] >= 0
    assert final["prompt_eval_duration"] > 0 and final["eval_duration"] > 0
    pieces = lines[:-1]
    text_key = "message" if path == "/api/chat" else "response"
    assert pieces and all(not line["done"] and text_key in line for line in pieces)
    assert 1 <= final["eval_count"] <= 12 and final["prompt_eval_count"] >= 3

    # The accounting closes the exchange just after the last byte: wait for it.
    expected = (before[0] + final["prompt_eval_count"], before[1] + final["eval_count"])
    wait_for("the tokens to be accounted", lambda: _counters(gateway) == expected, timeout=10)


def test_a_whole_answer_is_one_object(gateway: Gateway) -> None:
    before = _counters(gateway)
    response = httpx.post(
        f"{gateway.url}/api/chat",
        json={"model": MODEL, "messages": HI, "stream": False, "options": {"num_predict": 5}},
        timeout=120,
    )
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    answer = response.json()
    assert answer["done"] is True and answer["message"]["content"]
    expected = (before[0] + answer["prompt_eval_count"], before[1] + answer["eval_count"])
    wait_for("the tokens to be accounted", lambda: _counters(gateway) == expected, timeout=10)
