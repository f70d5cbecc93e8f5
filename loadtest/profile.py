"""Where a gateway's core goes under load: ``py-spy`` samples the process for a few seconds
(without pausing it) and the stacks are summed per function, inclusive and self.

py-spy sees no coroutine chains (an awaited coroutine is resumed by the event loop), so
shares are per function, not per caller.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

from loadtest.procs import OTHER_CORES, pinned

#: Frames every sample has; they say nothing.
_ROOTS = (
    "<module>", "_run_module_as_main", "_run_code", "main", "serve", "Server.run",
    "asyncio_run", "Runner.run", "run_until_complete", "run_forever", "_run_once", "_run",
)  # fmt: skip
#: Where a sample's innermost Python frame lives (time in C extensions counts for the Python
#: function that called them: Lua run by lupa shows as the embedded store's script runner).
AREAS = (
    ("gateway/store/embedded/", "memory:// store (embedded, Lua via lupa)"),
    ("lupa", "memory:// store (embedded, Lua via lupa)"),
    ("redis/", "Redis client (redis-py)"),
    ("uvicorn/", "HTTP server (uvicorn, Litestar)"),
    ("litestar/", "HTTP server (uvicorn, Litestar)"),
    ("aiohttp/", "upstream client (aiohttp)"),
    ("yarl/", "upstream client (aiohttp)"),
    ("multidict/", "upstream client (aiohttp)"),
    ("prometheus_client/", "metrics (prometheus_client)"),
    ("opentelemetry/", "tracing (OpenTelemetry)"),
    ("msgspec", "JSON (msgspec)"),
    ("gateway/", "gateway code"),
    ("asyncio/", "event loop (asyncio, uvloop)"),
)
_TRIM = ("site-packages/", "lib/python3.11/", "lib/python3.12/", "lib/python3.13/", "/work/main/")


def py_spy() -> str | None:
    beside = Path(sys.executable).parent / "py-spy"
    return str(beside) if beside.exists() else shutil.which("py-spy")


def _frame(raw: str) -> str:
    name, _, where = raw.partition(" (")
    path = where.rsplit(":", 1)[0].rstrip(")")
    for prefix in _TRIM:
        if prefix in path:
            path = path.split(prefix, 1)[1]
    return f"{name} ({path})"


def record(pid: int, seconds: float, *, rate: int = 200) -> dict | None:
    """Sample ``pid`` for ``seconds``; the top functions by inclusive and by self share."""
    binary = py_spy()
    if binary is None:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "stacks.txt"
        args = [binary, "record", "--pid", str(pid), "-d", str(max(1, round(seconds))),
                "-r", str(rate), "-f", "raw", "-o", str(out), "--nonblocking"]  # fmt: skip
        done = subprocess.run(pinned(args, OTHER_CORES), capture_output=True, timeout=seconds + 30)
        if done.returncode != 0 or not out.exists():
            return {"error": done.stderr.decode(errors="replace")[-500:]}
        return summarise(out.read_text())


def _area(frame: str) -> str:
    for marker, area in AREAS:
        if marker in frame:
            return area
    return "other"


def summarise(text: str, top: int = 12) -> dict:
    """Shares of samples: per area (innermost frame), per gateway function (inclusive), per
    function (self)."""
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    areas: Counter[str] = Counter()
    total = 0
    for line in text.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        total += n
        frames = [_frame(f) for f in stack.split(";")]
        for name in set(frames):
            inclusive[name] += n
        own[frames[-1]] += n
        areas[_area(frames[-1])] += n
    if not total:
        return {"samples": 0, "areas": [], "gateway": [], "self": []}

    def share(counter: Counter[str], keep=lambda name: True) -> list[list]:
        rows = [
            (k, v) for k, v in counter.most_common() if k.split(" (")[0] not in _ROOTS and keep(k)
        ]
        return [[name, round(v / total, 3)] for name, v in rows[:top]]

    return {
        "samples": total,
        "areas": share(areas),
        "gateway": share(inclusive, lambda k: "(gateway/" in k and "cli.py" not in k),
        "self": share(own),
    }
