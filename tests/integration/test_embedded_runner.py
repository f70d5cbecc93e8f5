"""``llama-gateway serve --model PATH``: the gateway starts its own llama-server runner, as
Ollama does, and stops it when it stops."""

from __future__ import annotations

import subprocess

import httpx
import openai

from tests.support.processes import Gateway


def test_gateway_starts_serves_and_stops_its_runner(llama_bin: str, model_path: str) -> None:
    gw = Gateway(
        "--model", f"smollm2={model_path}", "--no-auth", env={"LLAMA_SERVER_BIN": llama_bin}
    )
    gw.start()
    try:
        ready = httpx.get(f"{gw.url}/ready").json()
        (backend,) = ready["backends"]
        assert backend["model"] == "smollm2"
        assert backend["slots"] == 4  # the default -np
        runner_url = f"http://{backend['backend']}"
        assert httpx.get(f"{runner_url}/health").status_code == 200

        client = openai.OpenAI(base_url=f"{gw.url}/v1", api_key="x", max_retries=0)
        answer = client.chat.completions.create(
            model="smollm2", messages=[{"role": "user", "content": "Hi"}], max_tokens=3
        )
        assert answer.choices[0].message.content
    finally:
        gw.stop()
    # uvicorn re-raises SIGTERM after a clean shutdown, as a well-behaved process does.
    assert "Application shutdown complete" in gw.log()
    try:
        httpx.get(f"{runner_url}/health", timeout=2)
        still_up = True
    except httpx.ConnectError:
        still_up = False
    assert not still_up, "the runner outlived the gateway"


def test_missing_model_file_is_a_clear_error(llama_bin: str) -> None:
    gw = Gateway(
        "--model", "/nonexistent/model.gguf", "--no-auth", env={"LLAMA_SERVER_BIN": llama_bin}
    )
    assert _run_to_exit(gw) != 0
    assert "model file '/nonexistent/model.gguf' does not exist" in gw.log()


def test_missing_binary_is_a_clear_error(model_path: str) -> None:
    gw = Gateway(
        "--model", model_path, "--no-auth", env={"LLAMA_SERVER_BIN": "/nonexistent/llama-server"}
    )
    assert _run_to_exit(gw) != 0
    assert "'/nonexistent/llama-server' does not exist or is not executable" in gw.log()


def test_nothing_to_serve_is_refused() -> None:
    gw = Gateway("--no-auth")
    assert _run_to_exit(gw) == 2
    assert "nothing to serve" in gw.log()


def _run_to_exit(gw: Gateway) -> int:
    """Run a gateway that is expected to refuse to start; its exit code."""
    with gw.log_path.open("wb") as log:
        done = subprocess.run(
            gw.args, env=gw.env, stdout=log, stderr=subprocess.STDOUT, timeout=60, check=False
        )
    return done.returncode
