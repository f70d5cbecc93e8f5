"""``llama-gateway models``: the declared models and their runners, from a running gateway's
``GET /runners``. Prints a table, or JSON with ``--json``. Exit codes: 0 done, 1 the gateway
did not answer."""

from __future__ import annotations

import argparse
import json
import math
from typing import Any

from gateway.cli.client import ClientError, GatewayClient, add_connection_flags, fail
from gateway.units import format_size


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    models = subparsers.add_parser(
        "models",
        help="list declared models and their runners",
        description="List the declared models (state, replicas, keep-alive) and the runners "
        "a running gateway keeps. Exit codes: 0 done, 1 the gateway did not answer.",
    )
    add_connection_flags(models)
    models.add_argument("--json", action="store_true", help="print JSON instead of tables")
    models.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    client = GatewayClient.from_args(args)
    try:
        data = client.get_json("/runners")
    except ClientError as exc:
        return fail(exc)
    finally:
        client.close()
    if args.json:
        print(json.dumps(data, indent=2))
        return 0
    print(
        _table(
            ["MODEL", "STATE", "REPLICAS", "KEEP-ALIVE", "MEMORY", "RESTARTS", "ERROR"],
            [_model_row(m) for m in data["models"]],
        )
    )
    print()
    print(
        _table(
            ["MODEL", "RUNNER", "STATE", "DEVICE", "URL", "IN FLIGHT", "IDLE"],
            [_runner_row(r) for r in data["runners"]],
        )
    )
    return 0


def _model_row(model: dict[str, Any]) -> list[str]:
    replicas = model["replicas"]
    keep = model["keep_alive"]
    memory = model.get("memory_bytes")
    error = (model.get("last_error") or "").splitlines()
    return [
        model["id"],
        model["state"],
        f"{replicas['ready']}/{replicas['desired']}",
        "forever" if keep is None else _duration(keep),
        format_size(memory) if memory else "-",
        str(model["restarts"]),
        error[0][:60] if error else "",
    ]


def _runner_row(runner: dict[str, Any]) -> list[str]:
    ident = runner.get("container") or (f"pid {runner['pid']}" if runner.get("pid") else "-")
    idle = runner.get("idle_seconds")
    return [
        runner["model"],
        ident,
        runner["state"],
        runner["device"],
        runner.get("url") or "-",
        str(runner["inflight"]),
        "-" if idle is None else _duration(idle),
    ]


def _duration(seconds: float) -> str:
    if math.isinf(seconds):
        return "forever"
    for unit, size in (("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


def _table(header: list[str], rows: list[list[str]]) -> str:
    if not rows:
        return "  ".join(header) + "\n(none)"
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows, strict=False)]
    lines = [header, *rows]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(line, widths, strict=False)).rstrip() for line in lines
    )
