"""``ps``, ``list``, ``show``, ``stop`` against a real gateway that supervises a real runner —
of a model pulled from the local hub and served by its NAME (``serve --model smollm2``)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cli.conftest import clean_env, run_cli
from tests.cli.hub_server import Hub, Repo
from tests.support.processes import Gateway, free_port
from tests.support.runners import pid_alive, wait_for


@pytest.fixture(scope="module")
def models_dir(model_path: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The real SmolLM2 GGUF, pulled from a local hub and saved as ``smollm2``."""
    folder = tmp_path_factory.mktemp("models")
    hub = Hub()
    hub.repos["org/SmolLM2-135M-Instruct-GGUF"] = Repo(
        {"SmolLM2-135M-Instruct.Q4_1.gguf": Path(model_path).read_bytes()}
    )
    hub.start()
    try:
        done = run_cli(
            "pull",
            "hf:org/SmolLM2-135M-Instruct-GGUF:Q4_1",
            "--name",
            "smollm2",
            "--models-dir",
            str(folder),
            env=clean_env(HF_ENDPOINT=hub.url),
        )
    finally:
        hub.stop()
    assert done.returncode == 0, done.stderr
    return folder


@pytest.fixture(scope="module")
def gateway(models_dir: Path, llama_bin: str) -> Iterator[Gateway]:
    gw = Gateway(
        "--model",
        "smollm2",  # a NAME, found in --models-dir
        "--models-dir",
        str(models_dir),
        "--parallel",
        "2",
        "--ctx-size",
        "2048",
        "--no-auth",
        "--probe-interval",
        "0.3",
        env={"LLAMA_SERVER_BIN": llama_bin},
    )
    try:
        yield gw.start()
    finally:
        gw.stop()


def _cli(gw: Gateway, *args: str) -> str:
    done = run_cli(*args, "--url", gw.url)
    assert done.returncode == 0, done.stderr
    return done.stdout


def _ps(gw: Gateway) -> list[dict]:
    return json.loads(_cli(gw, "ps", "--json"))


def test_ps_shows_the_supervised_runner(gateway: Gateway) -> None:
    (row,) = _ps(gateway)
    assert row["model"] == "smollm2"
    assert row["state"] == "ready"
    assert (row["slots_busy"], row["slots_total"]) == (0, 2)
    assert row["supervised"] is True
    assert pid_alive(row["pid"])
    assert row["kv_cache_tokens"] is not None and row["kv_cache_ratio"] is not None
    table = _cli(gateway, "ps")
    header, line = table.splitlines()[:2]
    columns = ["MODEL", "BACKEND", "STATE", "SLOTS", "KV", "CACHE", "UNTIL", "PID", "GPU"]
    assert header.split() == columns
    assert line.split()[:4] == ["smollm2", row["backend"], "ready", "0/2"]
    assert "forever" in line and str(row["pid"]) in line  # --model runners stay loaded


def test_list_shows_the_declared_model(gateway: Gateway) -> None:
    cards = json.loads(_cli(gateway, "list", "--json"))
    card = next(c for c in cards if c["id"] == "smollm2")
    assert card["meta"]["state"] == "loaded"
    assert "smollm2" in _cli(gateway, "list")


def test_show_reads_the_gguf_header(gateway: Gateway) -> None:
    answer = json.loads(_cli(gateway, "show", "smollm2", "--json"))
    assert answer["details"]["quantization_level"] == "Q4_1"
    assert answer["model_info"]["general.architecture"] == "llama"
    text = _cli(gateway, "show", "smollm2")
    assert "architecture      llama" in text
    assert "quantization      Q4_1" in text
    assert "Template" in text


def test_show_of_an_unknown_model_is_one_line(gateway: Gateway) -> None:
    done = run_cli("show", "nope", "--url", gateway.url)
    assert done.returncode == 1
    assert done.stderr.strip() == "llama-gateway: the gateway answered 404: model 'nope' not found"


def test_stop_unloads_the_runner_now(gateway: Gateway) -> None:
    (row,) = _ps(gateway)
    assert "Stopped smollm2" in _cli(gateway, "stop", "smollm2")
    wait_for("the runner to go", lambda: not _ps(gateway), timeout=30)
    wait_for("its process to exit", lambda: not pid_alive(row["pid"]), timeout=30)
    cards = json.loads(_cli(gateway, "list", "--json"))
    assert next(c for c in cards if c["id"] == "smollm2")["meta"]["state"] == "unloaded"


def test_a_gateway_that_is_not_there() -> None:
    done = run_cli("ps", "--url", f"http://127.0.0.1:{free_port()}")
    assert done.returncode == 1
    assert done.stderr.startswith("llama-gateway: cannot reach the gateway at http://127.0.0.1:")
    assert "llama-gateway serve" in done.stderr
