"""OpenAI-shaped traffic against llama-gateway, for users who already run Locust.

Locust is not a dependency of the gateway or its tests; install it yourself::

    pip install locust
    LOCUST_API_KEYS=sk-lg-a,sk-lg-b locust -f loadtest/locustfile.py --host http://127.0.0.1:12434

Each simulated user picks one of the API keys (round the list) and draws tasks with these
weights. Everything is set through the environment:

``LOCUST_API_KEYS``       comma-separated keys (none: no ``Authorization``, for ``--no-auth``)
``LOCUST_MODEL``          chat/completions model (default ``smollm2``)
``LOCUST_EMBED_MODEL``    embeddings model (default ``smollm2-embed``)
``LOCUST_MIX``            task weights, default
                          ``chat=4,chat_stream=4,completion=1,embedding=1,session=2``
                          (a weight of 0 switches a task off)
``LOCUST_MAX_TOKENS``     tokens per answer (default 32)
``LOCUST_SESSION_TURNS``  turns of a multi-turn session (default 4)
``LOCUST_SYSTEM_PROMPT``  the system prompt every session shares
``LOCUST_WAIT``           ``min,max`` seconds a user waits between tasks (default ``0.5,2``)

Streamed requests report two entries under the same name: the request itself (for a stream,
Locust times it to the response headers) and ``TTFT`` (time to the first token event). The
``session`` task sends a chat whose history grows turn by turn with the real answers, which
is what prefix-affinity routing is for.
"""

from __future__ import annotations

import itertools
import json
import os
import random
import time

from locust import HttpUser, between, task

MODEL = os.environ.get("LOCUST_MODEL", "smollm2")
EMBED_MODEL = os.environ.get("LOCUST_EMBED_MODEL", "smollm2-embed")
MAX_TOKENS = int(os.environ.get("LOCUST_MAX_TOKENS", "32"))
SESSION_TURNS = int(os.environ.get("LOCUST_SESSION_TURNS", "4"))
SYSTEM_PROMPT = os.environ.get(
    "LOCUST_SYSTEM_PROMPT",
    "You are a concise assistant. Answer in one or two sentences, with a number if you can.",
)
KEYS = [k.strip() for k in os.environ.get("LOCUST_API_KEYS", "").split(",") if k.strip()]
_next_key = itertools.cycle(KEYS or [None])

QUESTIONS = (
    "What limits the speed of a small language model on a laptop?",
    "Why does a shared system prompt make caching worthwhile?",
    "How many requests can four slots serve if each takes half a second?",
    "What is time to first token, and what makes it long?",
    "When is a queue better than refusing a request?",
    "What does a load balancer need to know about a model server?",
)


def _mix() -> dict[str, int]:
    spec = os.environ.get("LOCUST_MIX", "chat=4,chat_stream=4,completion=1,embedding=1,session=2")
    weights = {}
    for part in spec.split(","):
        name, _, weight = part.partition("=")
        weights[name.strip()] = int(weight or 1)
    return weights


MIX = _mix()


class OpenAIUser(HttpUser):
    """One client of the gateway's OpenAI API, holding one API key."""

    _low, _, _high = os.environ.get("LOCUST_WAIT", "0.5,2").partition(",")
    wait_time = between(float(_low), float(_high or _low))

    def on_start(self) -> None:
        key = next(_next_key)
        self.headers = {"Content-Type": "application/json"}
        if key:
            self.headers["Authorization"] = f"Bearer {key}"

    # -- tasks --------------------------------------------------------------------------------
    @task(MIX.get("chat", 0))
    def chat(self) -> None:
        self._chat([{"role": "user", "content": random.choice(QUESTIONS)}], "chat")

    @task(MIX.get("chat_stream", 0))
    def chat_stream(self) -> None:
        self._stream([{"role": "user", "content": random.choice(QUESTIONS)}], "chat stream")

    @task(MIX.get("completion", 0))
    def completion(self) -> None:
        body = {"model": MODEL, "prompt": random.choice(QUESTIONS), "max_tokens": MAX_TOKENS}
        with self.client.post(
            "/v1/completions",
            json=body,
            headers=self.headers,
            name="completion",
            catch_response=True,
        ) as response:
            self._check(response)

    @task(MIX.get("embedding", 0))
    def embedding(self) -> None:
        body = {"model": EMBED_MODEL, "input": random.sample(QUESTIONS, 2)}
        with self.client.post(
            "/v1/embeddings", json=body, headers=self.headers, name="embedding", catch_response=True
        ) as response:
            self._check(response)

    @task(MIX.get("session", 0))
    def session(self) -> None:
        """A multi-turn chat: each turn sends the whole history back, answers included."""
        messages = [{"role": "system", "content": SYSTEM_PROMPT}]
        for turn in range(1, SESSION_TURNS + 1):
            messages.append({"role": "user", "content": random.choice(QUESTIONS)})
            answer = self._stream(
                messages, f"session turn {min(turn, 3)}{'+' if turn >= 3 else ''}"
            )
            if answer is None:
                return
            messages.append({"role": "assistant", "content": answer})

    # -- requests -----------------------------------------------------------------------------
    def _chat(self, messages: list[dict], name: str) -> str | None:
        body = {"model": MODEL, "messages": messages, "max_tokens": MAX_TOKENS}
        with self.client.post(
            "/v1/chat/completions", json=body, headers=self.headers, name=name, catch_response=True
        ) as response:
            if not self._check(response):
                return None
            return response.json()["choices"][0]["message"]["content"]

    def _stream(self, messages: list[dict], name: str) -> str | None:
        """A streamed chat; fires an extra ``TTFT`` entry. Returns the answer's text."""
        body = {
            "model": MODEL,
            "messages": messages,
            "max_tokens": MAX_TOKENS,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        started = time.perf_counter()
        parts: list[str] = []
        with self.client.post(
            "/v1/chat/completions",
            json=body,
            headers=self.headers,
            name=name,
            stream=True,
            catch_response=True,
        ) as response:
            if response.status_code != 200:
                response.failure(f"{response.status_code}: {response.text[:200]}")
                return None
            done = False
            for line in response.iter_lines():
                if not line.startswith(b"data: "):
                    continue
                data = line[6:]
                if data == b"[DONE]":
                    done = True
                    break
                event = json.loads(data)
                if "error" in event:
                    response.failure(f"stream error: {event['error']}")
                    return None
                for choice in event.get("choices") or ():
                    piece = (choice.get("delta") or {}).get("content")
                    if piece:
                        if not parts:
                            self.environment.events.request.fire(
                                request_type="TTFT",
                                name=name,
                                context={},
                                exception=None,
                                response_time=(time.perf_counter() - started) * 1000,
                                response_length=0,
                            )
                        parts.append(piece)
            if not done:
                response.failure("stream ended without [DONE]")
                return None
            response.success()
        return "".join(parts)

    @staticmethod
    def _check(response) -> bool:
        if response.status_code == 200:
            response.success()
            return True
        # 429 and 503 are the gateway's refusals under load: counted as failures, by status.
        response.failure(f"{response.status_code}: {response.text[:200]}")
        return False
