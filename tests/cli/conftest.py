"""Helpers for the command line's tests: ``python -m gateway …`` as a user runs it, in a
clean environment (the caller's ``LLAMA_GATEWAY_*`` settings kept out)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def clean_env(**extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("LLAMA_GATEWAY_") and k not in ("LLAMA_SERVER_BIN", "HF_ENDPOINT")
    }
    return {**env, **extra}


def run_cli(
    *args: str, env: dict[str, str] | None = None, input: str | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway", *args],
        cwd=ROOT,
        env=env if env is not None else clean_env(),
        input=input,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.fixture
def cache(tmp_path: Path) -> Path:
    """An empty cache folder (no fetched llama-server, no pulled models)."""
    folder = tmp_path / "cache"
    folder.mkdir()
    return folder
