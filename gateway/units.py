"""The two kinds of quantity people write in the config by hand: durations (``30s``, ``5m``,
``1h``; ``-1`` forever) and memory sizes (``512MiB``, ``24GB``, ``80G``, or plain bytes).

Both parse to plain numbers once, when the settings are loaded; nothing downstream sees text.
"""

from __future__ import annotations

import math
import re

#: A duration that never runs out (a ``keep_alive`` of ``-1``).
FOREVER = math.inf

_DURATION_UNITS = {"": 1.0, "ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION = re.compile(r"^\s*(-?\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")

_SIZE_UNITS = {
    "": 1,
    "b": 1,
    "k": 1000,
    "kb": 1000,
    "m": 1000**2,
    "mb": 1000**2,
    "g": 1000**3,
    "gb": 1000**3,
    "t": 1000**4,
    "tb": 1000**4,
    "kib": 1024,
    "mib": 1024**2,
    "gib": 1024**3,
    "tib": 1024**4,
}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$")


def parse_duration(value: str | float | int) -> float:
    """Seconds in ``value``: a number of seconds or a number with a unit (ms, s, m, h, d).
    Any negative duration means forever (:data:`FOREVER`), as in Ollama's ``keep_alive``."""
    if isinstance(value, bool):
        raise ValueError(f"not a duration: {value!r}")
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        match = _DURATION.match(value)
        if not match:
            raise ValueError(f"not a duration: {value!r} (use e.g. 30s, 5m, 1h, 0 or -1)")
        seconds = float(match.group(1)) * _DURATION_UNITS[match.group(2) or ""]
    if math.isnan(seconds):
        raise ValueError(f"not a duration: {value!r}")
    return FOREVER if seconds < 0 else seconds


def parse_size(value: str | int | float) -> int:
    """Bytes in ``value``: a number of bytes, or a number with a decimal (GB) or binary (GiB)
    unit."""
    if isinstance(value, bool):
        raise ValueError(f"not a memory size: {value!r}")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError(f"a memory size cannot be negative: {value!r}")
        return int(value)
    match = _SIZE.match(value)
    unit = (match.group(2) if match else "").lower()
    if not match or unit not in _SIZE_UNITS:
        raise ValueError(f"not a memory size: {value!r} (use e.g. 24GiB, 8GB or bytes)")
    return int(float(match.group(1)) * _SIZE_UNITS[unit])


def format_size(n: float) -> str:
    """``n`` bytes for people: ``1.5 GiB``, ``300.0 MiB``."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"
