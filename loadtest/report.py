"""Where results go: ``<scenario>.json`` and ``<scenario>.md`` per scenario, and ``report.md``
joining every scenario's section under one description of the machine."""

from __future__ import annotations

import datetime
import json
import os
import platform
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from loadtest.procs import ROOT

DEFAULT_OUT = Path(__file__).resolve().parent / "results"
SCENARIO_ORDER = ("overhead", "routing", "overload")


@dataclass
class Target:
    """One of the issue's goals next to what was measured."""

    name: str
    goal: str
    value: Any
    met: bool | None

    def row(self) -> str:
        mark = {True: "met", False: "**not met**", None: "n/a"}[self.met]
        return f"| {self.name} | {self.goal} | {_fmt(self.value)} | {mark} |"


@dataclass
class ScenarioResult:
    name: str
    config: dict[str, Any]
    results: dict[str, Any]
    targets: list[Target] = field(default_factory=list)
    markdown: str = ""
    plots: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


#: A 1-minute load average above this share of the cores marks a run as taken on a loaded
#: machine.
LOADED_SHARE = 0.75


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.3f}" if abs(value) < 10 else f"{value:,.1f}"
    if isinstance(value, int):
        return f"{value:,}"
    return "-" if value is None else str(value)


def fmt(value: Any) -> str:
    return _fmt(value)


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _git() -> str:
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
        return f"{head}{' (with uncommitted changes)' if dirty else ''}"
    except OSError:
        return "unknown"


def machine() -> dict[str, Any]:
    return {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "nproc": os.cpu_count(),
        "cpu": _cpu_model(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "commit": _git(),
    }


def write(out: Path, result: ScenarioResult, host: dict[str, Any], *, smoke: bool) -> None:
    out.mkdir(parents=True, exist_ok=True)
    document = {
        "scenario": result.name,
        "smoke": smoke,
        "machine": host,
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "config": result.config,
        "results": result.results,
        "targets": [t.__dict__ for t in result.targets],
        "plots": result.plots,
        "notes": result.notes,
    }
    (out / f"{result.name}.json").write_text(json.dumps(document, indent=1, default=str) + "\n")
    (out / f"{result.name}.md").write_text(section(result, host, smoke=smoke))
    join(out)


def section(result: ScenarioResult, host: dict[str, Any], *, smoke: bool) -> str:
    lines = [f"## {result.name}", ""]
    smoke_note = " - SMOKE size, not a benchmark" if smoke else ""
    lines.append(
        f"Run {host['date']}, load average at start {host['load_average'][0]} "
        f"(1 min), after {round(os.getloadavg()[0], 2)}{smoke_note}."
    )
    lines.append("")
    load, cores = host["load_average"][0], host.get("nproc") or 1
    if not smoke and load > LOADED_SHARE * cores:
        lines += [
            f"> **Taken on a loaded machine** (load average {load} on {cores} cores, from other "
            "work): absolute figures are pessimistic; the ratios between contenders, measured "
            "back to back, are the fairer reading.",
            "",
        ]
    if result.targets:
        lines += ["| goal | target | measured | |", "|---|---|---|---|"]
        lines += [t.row() for t in result.targets]
        lines.append("")
    lines.append(result.markdown.strip())
    lines.append("")
    for plot in result.plots:
        lines += [f"![{plot}]({plot})", ""]
    for note in result.notes:
        lines += [f"> {note}", ""]
    return "\n".join(lines)


def join(out: Path) -> None:
    """``report.md``: the machine, then every scenario's section found in ``out``."""
    sections = [out / f"{name}.md" for name in SCENARIO_ORDER if (out / f"{name}.md").exists()]
    if not sections:
        return
    host = json.loads((out / f"{sections[0].stem}.json").read_text())["machine"]
    head = [
        "# llama-gateway benchmark report",
        "",
        "Written by `python -m loadtest` (`make bench`). Each scenario measures its contenders "
        "back to back in one run on one machine; ratios are the honest part on a noisy machine.",
        "",
        f"Machine: {host['nproc']} cores (`nproc`), {host['cpu']}, Linux {host['kernel']}, "
        f"Python {host['python']}; gateway commit {host['commit']}.",
        "",
    ]
    body = [path.read_text() for path in sections]
    (out / "report.md").write_text("\n".join(head) + "\n" + "\n".join(body))
