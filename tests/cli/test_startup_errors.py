"""``serve`` refuses to start with one plain line that says what to do — exit 2 for flags or
config that cannot be used, 1 for anything else — and finds each problem before any runner
starts."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from tests.cli.conftest import clean_env, run_cli
from tests.support.processes import free_port


def _one_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr
    assert lines[0].startswith("llama-gateway: ")
    return lines[0]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((), "nothing to serve; give --model PATH or --backend URL"),
        (("--backend", "http://127.0.0.1:9", "--port", "0"), "port must be 1..65535"),
        (("--backend", "http://127.0.0.1:9", "--header-timeout", "0"), "header_timeout must"),
        (("--config", "/nonexistent/gateway.yaml"), "cannot read config file"),
        (
            ("--backend", "http://127.0.0.1:9", "--redis-url", "foo://x"),
            "invalid setting: Redis URL must specify one of the following schemes",
        ),
    ],
)
def test_bad_settings_exit_2(args: tuple[str, ...], message: str) -> None:
    done = run_cli("serve", *args)
    assert done.returncode == 2
    assert message in _one_line(done.stderr)


def test_a_flag_argparse_refuses_exits_2() -> None:
    done = run_cli("serve", "--log-format", "xml")
    assert done.returncode == 2
    assert "--log-format: invalid choice: 'xml'" in done.stderr


def test_missing_model_file(cache: Path) -> None:
    env = clean_env(LLAMA_GATEWAY_CACHE_DIR=str(cache))
    done = run_cli("serve", "--model", "/nonexistent/model.gguf", env=env)
    assert done.returncode == 1
    line = _one_line(done.stderr)
    assert "model file '/nonexistent/model.gguf' does not exist; check the path" in line


def test_unknown_model_name_says_how_to_pull_it(cache: Path) -> None:
    env = clean_env(LLAMA_GATEWAY_CACHE_DIR=str(cache))
    done = run_cli("serve", "--model", "qwen-7b", env=env)
    assert done.returncode == 1
    line = _one_line(done.stderr)
    assert "no pulled model has that name" in line
    assert str(cache / "models") in line and "llama-gateway pull" in line


def test_missing_configured_binary(model_path: str, cache: Path) -> None:
    env = clean_env(LLAMA_SERVER_BIN="/nonexistent/llama-server")
    done = run_cli("serve", "--model", model_path, env=env)
    assert done.returncode == 1
    line = _one_line(done.stderr)
    assert "'/nonexistent/llama-server' does not exist or is not executable" in line


def test_no_binary_anywhere_names_a_command_that_fetches_one(model_path: str, cache: Path) -> None:
    env = clean_env(LLAMA_GATEWAY_CACHE_DIR=str(cache), PATH="/usr/bin:/bin")
    done = run_cli("serve", "--model", model_path, env=env)
    assert done.returncode == 1
    line = _one_line(done.stderr)
    assert "cannot find llama-server" in line and "`make llama-server`" in line


def test_busy_port_is_found_before_any_runner_starts(model_path: str, llama_bin: str) -> None:
    port = free_port()
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", port))
        holder.listen()
        env = clean_env(LLAMA_SERVER_BIN=llama_bin)
        done = run_cli("serve", "--model", model_path, "--port", str(port), env=env)
    assert done.returncode == 1
    line = _one_line(done.stderr)  # nothing else: no runner was started, no banner
    assert f"port {port} is already in use" in line and "--port" in line


def test_a_runner_that_dies_while_loading_is_one_line(tmp_path: Path, llama_bin: str) -> None:
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"GGUF" + b"\0" * 64)  # a header llama-server cannot load
    env = clean_env(LLAMA_SERVER_BIN=llama_bin)
    done = run_cli("serve", "--model", str(broken), "--log-level", "error", env=env)
    assert done.returncode == 1
    assert "ExceptionGroup" not in done.stderr
    line = _one_line(done.stderr)  # --log-level error: uvicorn's own lines are not errors
    assert f"cannot read GGUF file {broken}" in line
