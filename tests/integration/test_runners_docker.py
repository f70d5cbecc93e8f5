"""The ``docker`` driver and the discovery of labelled containers, over the Docker Engine HTTP
API through the real ``docker`` SDK — against a real engine where ``DOCKER_HOST`` answers (not
on these machines), and here against :mod:`tests.support.docker_emulator`, which runs each
container as a local ``llama-server`` process."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import docker
import httpx
import pytest

from tests.support.docker_emulator import DockerEmulator
from tests.support.runners import chat, config_gateway, runners, wait_for

pytestmark = pytest.mark.llama

GATEWAY = "gw-test"


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory, llama_bin: str) -> Iterator[DockerEmulator]:
    emulator = DockerEmulator(llama_bin, tmp_path_factory.mktemp("engine")).start()
    try:
        yield emulator
    finally:
        emulator.stop()


def _ready_models(url: str) -> set[str]:
    ready = httpx.get(f"{url}/ready", timeout=5).json()
    return {b["model"] for b in ready["backends"] if b["state"] == "ready"}


def test_docker_runners_and_discovered_containers(
    engine: DockerEmulator, tmp_path: Path, model_path: str
) -> None:
    models_dir = str(Path(model_path).resolve().parent)
    in_container = f"/models/{Path(model_path).name}"
    sdk = docker.DockerClient(base_url=engine.url)
    # Left behind by an earlier run of this gateway: removed when it starts.
    leftover = sdk.containers.create(
        "ghcr.io/ggml-org/llama.cpp:server",
        name="gw-test-leftover",
        labels={"llama-gateway.gateway": GATEWAY, "llama-gateway.managed": "scheduler"},
    )
    # Started by `docker compose`: discovered and adopted.
    compose = sdk.containers.run(
        "ghcr.io/ggml-org/llama.cpp:server",
        command=["-m", in_container, "--alias", "smol-compose", "-np", "2", "-c", "1024"],
        name="compose-llama-1",
        detach=True,
        labels={"llama-gateway.gateway": GATEWAY, "llama-gateway.port": "8080"},
        volumes={models_dir: {"bind": "/models", "mode": "ro"}},
        ports={"8080/tcp": ("127.0.0.1", None)},
    )
    config = {
        "runner_driver": "docker",
        "gateway_name": GATEWAY,
        "gpus": [{"id": "1", "memory": "8GiB"}],
        "docker": {
            "host": engine.url,
            "image": "ghcr.io/ggml-org/llama.cpp:server-cuda",
            "models_dir": models_dir,
            "discover": True,
            "discover_interval": 0.5,
        },
        "models": [{"name": "smol-docker", "path": model_path, "ctx_size": 1024, "parallel": 2}],
    }
    gw = config_gateway(tmp_path, config)
    gw.start()
    try:
        assert engine.find(leftover.id) is None
        wait_for("the compose container", lambda: "smol-compose" in _ready_models(gw.url), 60)
        assert chat(gw, "smol-compose").status_code == 200

        answer = chat(gw, "smol-docker")
        assert answer.status_code == 200, answer.text
        body = engine.created[-1]
        assert body["Image"] == "ghcr.io/ggml-org/llama.cpp:server-cuda"
        assert body["Labels"] == {
            "llama-gateway.gateway": GATEWAY,
            "llama-gateway.model": "smol-docker",
            "llama-gateway.managed": "scheduler",
            "llama-gateway.port": "8080",
        }
        host = body["HostConfig"]
        assert host["Binds"] == [f"{models_dir}:/models:ro"]
        (gpu,) = host["DeviceRequests"]
        assert gpu["DeviceIDs"] == ["1"] and gpu["Capabilities"] == [["gpu"]]
        assert gpu["Driver"] == "nvidia"
        assert body["Cmd"][:2] == ["-m", in_container]
        assert "LLAMA_ARG_PORT=8080" in body["Env"]
        (runner,) = runners(gw)["runners"]
        assert runner["driver"] == "docker" and runner["device"] == "GPU 1"
        container = engine.find(runner["container"])
        assert container is not None and container.status()[0] == "running"

        # The compose container goes away: drained, then out of the pool.
        compose.remove(force=True)
        wait_for("the container to leave", lambda: "smol-compose" not in _ready_models(gw.url))
        wait_for(
            "its backend to be removed",
            lambda: all(
                b["model"] != "smol-compose"
                for b in httpx.get(f"{gw.url}/ready", timeout=5).json()["backends"]
            ),
        )
    finally:
        gw.stop()
    # The runner container is stopped and removed with the gateway.
    assert container.process is not None and container.process.poll() is not None
    assert all(
        c.labels.get("llama-gateway.managed") != "scheduler" for c in engine.containers.values()
    )
    assert ("GET", "/_ping") in engine.calls


def test_unreachable_engine_is_a_clear_error(tmp_path: Path, model_path: str) -> None:
    config = {
        "runner_driver": "docker",
        "docker": {"host": "tcp://127.0.0.1:9", "models_dir": str(Path(model_path).parent)},
        "models": [{"name": "smol", "path": model_path, "preload": True}],
    }
    gw = config_gateway(tmp_path, config)
    with gw.log_path.open("wb") as log:
        done = subprocess.run(
            gw.args, env=gw.env, stdout=log, stderr=subprocess.STDOUT, timeout=60, check=False
        )
    assert done.returncode != 0
    assert "cannot reach the Docker engine" in gw.log()
