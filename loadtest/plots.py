"""The PNG plots of the report (matplotlib, no display): latency CDFs, per-policy bars,
per-key shares. Each function returns the file names it wrote into ``out``."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from loadtest.stats import cdf

DPI = 80


def _save(fig, out: Path, name: str) -> str:
    out.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(out / name, dpi=DPI)
    plt.close(fig)
    return name


def _cdfs(series: dict[str, list[float]], xlabel: str, ylabel: str, title: str):
    """One figure of latency CDFs on a log axis, a line per non-empty series."""
    fig, ax = plt.subplots(figsize=(6, 4))
    for label, values in series.items():
        if values:
            x, y = cdf(values)
            ax.plot(x, y, label=label)
    ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend()
    return fig


def overhead(out: Path, raw: dict[str, list[float]], rates: tuple[int, ...]) -> list[str]:
    """Latency CDFs of each contender at each fixed rate, non-streamed and streamed."""
    fig, axes = plt.subplots(len(rates), 2, figsize=(10, 3.4 * len(rates)), squeeze=False)
    for row, rate in enumerate(rates):
        for ax, mode in zip(axes[row], ("whole", "stream"), strict=True):
            for key, values in raw.items():
                kind, at, name = key.split("-", 2)
                if kind == mode and int(at) == rate and values:
                    x, y = cdf(values)
                    ax.plot(x, y, label=name)
            ax.set_xscale("log")
            ax.set_xlabel("latency (ms, log)")
            ax.set_ylabel("fraction of requests")
            ax.set_title(f"{'streamed' if mode == 'stream' else 'non-streamed'}, {rate} req/s")
            ax.grid(True, alpha=0.3)
            ax.legend(fontsize=8)
    return [_save(fig, out, "overhead-latency-cdf.png")]


def routing(out: Path, policies: dict[str, dict]) -> list[str]:
    """Per-policy bars: cache-hit ratio, TTFT p50/p95, end-to-end p95, tokens/s."""
    names = list(policies)
    panels = [
        ("cache-hit ratio, turns 2+", [policies[n]["cache_hit_ratio_turns2plus"] for n in names]),
        ("TTFT p50, turns 2+ (ms)", [policies[n]["ttft_ms_turns2plus"]["p50"] for n in names]),
        ("TTFT p95, turns 2+ (ms)", [policies[n]["ttft_ms_turns2plus"]["p95"] for n in names]),
        ("end-to-end p95 (ms)", [policies[n]["latency_ms"]["p95"] for n in names]),
        ("completion tokens/s", [policies[n]["tokens_per_s"] for n in names]),
    ]
    fig, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels), 3.6))
    colors = ["tab:blue", "tab:orange", "tab:green", "tab:red"]
    for ax, (title, values) in zip(axes, panels, strict=True):
        ax.bar(names, [v or 0 for v in values], color=colors[: len(names)])
        ax.set_title(title, fontsize=10)
        ax.tick_params(axis="x", labelrotation=20, labelsize=8)
        ax.grid(True, axis="y", alpha=0.3)
    written = [_save(fig, out, "routing-policies.png")]

    series = {name: policies[name].get("_ttft_raw") or [] for name in names}
    fig = _cdfs(series, "TTFT (ms, log)", "fraction of requests", "TTFT by routing policy")
    written.append(_save(fig, out, "routing-ttft-cdf.png"))
    return written


def overload(
    out: Path,
    keys: dict[str, dict],
    latencies: dict[str, list[float]],
    *,
    suffix: str = "",
    title: str = "",
) -> list[str]:
    """Per-key shares of served tokens and how requests ended; per-key latency CDFs."""
    names = list(keys)
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    if title:
        fig.suptitle(title)
    shares = [keys[n]["served_token_share"] or 0 for n in names]
    axes[0].bar(names, shares, color=["tab:blue", "tab:orange"][: len(names)])
    fair = [keys[n].get("fair_share") for n in names]
    if all(f is not None for f in fair):  # max-min fair: what each asked for, up to equal
        axes[0].scatter(names, fair, color="black", marker="_", s=2000, label="fair share")
    else:
        axes[0].axhline(1 / max(1, len(names)), color="grey", linestyle="--", label="equal share")
    axes[0].set_ylim(0, 1)
    axes[0].set_title("share of served tokens")
    axes[0].legend()
    outcomes = sorted({o for n in names for o in keys[n]["outcomes"]})
    bottom = [0] * len(names)
    for outcome in outcomes:
        values = [keys[n]["outcomes"].get(outcome, 0) for n in names]
        axes[1].bar(names, values, bottom=bottom, label=outcome)
        bottom = [b + v for b, v in zip(bottom, values, strict=True)]
    axes[1].set_title("how requests ended")
    axes[1].legend()
    written = [_save(fig, out, f"overload-keys{suffix}.png")]

    fig = _cdfs(
        latencies, "latency of successful requests (ms, log)", "fraction", "per-key latency"
    )
    if title:
        fig.suptitle(title)
    written.append(_save(fig, out, f"overload-latency-cdf{suffix}.png"))
    return written
