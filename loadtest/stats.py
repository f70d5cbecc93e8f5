"""Summaries of measured samples: percentiles, Jain's fairness index, CDF points."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def summary(values: Sequence[float], *, scale: float = 1000.0) -> dict[str, float | int | None]:
    """Count, mean and p50/p95/p99 of ``values`` (seconds), in milliseconds by default."""
    if not values:
        return {"n": 0, "mean": None, "p50": None, "p95": None, "p99": None, "max": None}
    a = np.asarray(values, dtype=float) * scale
    p50, p95, p99 = np.percentile(a, [50, 95, 99])
    return {
        "n": len(values),
        "mean": round(float(a.mean()), 3),
        "p50": round(float(p50), 3),
        "p95": round(float(p95), 3),
        "p99": round(float(p99), 3),
        "max": round(float(a.max()), 3),
    }


def added(gateway: dict, direct: dict) -> dict[str, float | None]:
    """What the gateway adds at each percentile (ms), and the ratio of the p50s."""
    out: dict[str, float | None] = {}
    for p in ("p50", "p95", "p99"):
        g, d = gateway.get(p), direct.get(p)
        out[p] = None if g is None or d is None else round(g - d, 3)
    g, d = gateway.get("p50"), direct.get("p50")
    out["ratio_p50"] = round(g / d, 3) if g and d else None
    return out


def jain(values: Sequence[float]) -> float | None:
    """Jain's fairness index: 1 when all are equal, 1/n when one has everything."""
    if not values or not any(values):
        return None
    a = np.asarray(values, dtype=float)
    return round(float(a.sum() ** 2 / (len(a) * (a**2).sum())), 4)


def cdf(values: Sequence[float], *, scale: float = 1000.0) -> tuple[np.ndarray, np.ndarray]:
    a = np.sort(np.asarray(values, dtype=float) * scale)
    return a, np.arange(1, len(a) + 1) / max(1, len(a))
