"""``gpu.json`` and ``gpu.md`` beside the scenarios' own results: which GPU (nvidia-smi's name,
driver and memory), which runner command and model, and the routing and overhead figures that
a GPU run is for. Called by ``run.sh run``; on ``--cpu`` the GPU is reported as none."""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any


def gpus() -> list[dict[str, str]]:
    if shutil.which("nvidia-smi") is None:
        return []
    fields = ("name", "driver_version", "memory.total", "compute_cap")
    out = subprocess.run(
        ["nvidia-smi", f"--query-gpu={','.join(fields)}", "--format=csv,noheader"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return [
        dict(zip(fields, (v.strip() for v in line.split(",")), strict=True))
        for line in out.strip().splitlines()
    ]


def _load(out: Path, name: str) -> dict[str, Any] | None:
    path = out / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--runner", type=Path, required=True, help="the llama-server wrapper")
    parser.add_argument("--model", required=True)
    parser.add_argument("--store", required=True)
    parser.add_argument("--scenarios", required=True)
    args = parser.parse_args()
    found = gpus()
    runner = args.runner.read_text().strip().splitlines()[-1]
    document = {
        "gpus": found,
        "runner_command": runner,
        "model": args.model,
        "store": args.store,
        "scenarios": {n: _load(args.out, n) is not None for n in args.scenarios.split()},
    }
    (args.out / "gpu.json").write_text(json.dumps(document, indent=1) + "\n")
    lines = ["# GPU run", ""]
    if found:
        lines += [
            f"- GPU: {g['name']}, driver {g['driver_version']}, {g['memory.total']}, "
            f"compute capability {g['compute_cap']}"
            for g in found
        ]
    else:
        lines.append("- GPU: none (a `--cpu` check of the orchestration, not a GPU result)")
    store = (
        "overhead compares memory:// and redis://; routing's gateways use memory://"
        if args.store == "redis://"
        else "no redis-server: memory:// only, overhead skipped"
    )
    lines += [f"- runner: `{runner}`", f"- model: `{args.model}`", f"- store: {store}", ""]
    routing = _load(args.out, "routing")
    if routing:
        lines += [
            "| policy | cache-hit ratio, turns 2+ | TTFT p50 turns 2+ (ms) | tokens/s |",
            "|---|---|---|---|",
        ]
        for name, e in routing["results"]["policies"].items():
            lines.append(
                f"| {name} | {e['cache_hit_ratio_turns2plus']} | "
                f"{e['ttft_ms_turns2plus']['p50']} | {e['tokens_per_s']} |"
            )
        lines.append("")
    overhead = _load(args.out, "overhead")
    if overhead:
        real = overhead["results"]["real_llama_server"]
        lines.append(
            f"Gateway over the real runner, added p50: +{real['whole']['added_ms']['p50']} ms "
            f"(whole), TTFT +{real['stream']['ttft_added_ms']['p50']} ms (streamed)."
        )
        lines.append("")
    lines.append("Details: routing.md, overhead.md, report.md in this folder.")
    (args.out / "gpu.md").write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
