"""``keep_alive`` on a model the gateway runs itself: a request's keep-alive shows in
``/api/ps``, an empty request loads the model, ``keep_alive: 0`` unloads its runner (after a
chat, or alone, as ``ollama stop`` sends it) — the ``llama-server`` process is gone."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import ollama
import pytest

from tests.ollama.conftest import HI
from tests.support.processes import Gateway
from tests.support.runners import config_gateway, pid_alive, runners, wait_for

pytestmark = pytest.mark.llama

RUN = "smol-ollama"


@pytest.fixture(scope="module")
def supervised(
    tmp_path_factory: pytest.TempPathFactory, llama_bin: str, model_path: str
) -> Iterator[Gateway]:
    """One declared model, loaded on demand, two slots of 512 tokens, kept 5 minutes."""
    config = {
        "models": [
            {"name": RUN, "path": model_path, "ctx_size": 1024, "parallel": 2, "keep_alive": "5m"}
        ]
    }
    gw = config_gateway(
        tmp_path_factory.mktemp("ollama-keep-alive"), config, env={"LLAMA_SERVER_BIN": llama_bin}
    )
    gw.start()
    try:
        yield gw
    finally:
        gw.stop()


@pytest.fixture(scope="module")
def client(supervised: Gateway) -> ollama.Client:
    return ollama.Client(host=supervised.url, timeout=120)


def _loaded(client: ollama.Client) -> list[str]:
    return [m.model or "" for m in client.ps().models]


def _pid(gw: Gateway) -> int:
    (runner,) = [r for r in runners(gw)["runners"] if r["state"] == "ready"]
    return int(runner["pid"])


def test_an_unloaded_model_is_listed_and_shown_from_its_file(client: ollama.Client) -> None:
    assert RUN in [m.model for m in client.list().models]
    assert RUN not in _loaded(client)
    shown = client.show(RUN)
    assert shown.modelinfo is not None and shown.modelinfo["general.architecture"] == "llama"
    assert shown.parameters == "num_ctx 512"  # 1024 over two slots, known before loading


def test_empty_requests_load_and_unload(client: ollama.Client, supervised: Gateway) -> None:
    loaded = client.generate(model=RUN, keep_alive="10m")
    assert loaded.done_reason == "load"
    (shown,) = [m for m in client.ps().models if m.model == RUN]
    assert shown.context_length == 512 and shown.size and shown.size > 50_000_000
    assert shown.size_vram == 0  # a CPU runner on the host
    assert shown.expires_at is not None
    left = shown.expires_at - datetime.now(UTC)
    assert timedelta(minutes=9) < left <= timedelta(minutes=10, seconds=5)
    pid = _pid(supervised)
    assert pid_alive(pid)

    unloaded = client.generate(model=RUN, keep_alive=0)
    assert unloaded.done and unloaded.done_reason == "unload" and unloaded.response == ""
    wait_for("the runner to stop", lambda: RUN not in _loaded(client) and not pid_alive(pid))
    assert RUN in [m.model for m in client.list().models]  # still declared


def test_a_chat_with_keep_alive_0_unloads_after_answering(
    client: ollama.Client, supervised: Gateway
) -> None:
    answer = client.chat(model=RUN, messages=HI, keep_alive=0, options={"num_predict": 4})
    assert answer.done and answer.message.content
    assert answer.load_duration and answer.load_duration > 0  # this request loaded it
    wait_for("the runner to stop after the answer", lambda: RUN not in _loaded(client))
    wait_for("its process to end", lambda: runners(supervised)["runners"] == [])
    again = client.chat(model=RUN, messages=HI, options={"num_predict": 4})
    assert again.message.content and RUN in _loaded(client)  # the next request loads it again
