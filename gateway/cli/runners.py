"""``ps``, ``list``, ``show MODEL``, ``stop MODEL``: what a running gateway serves, through its
HTTP API — ``GET /runners`` and ``GET /v1/models``, and Ollama's ``POST /api/show`` and
``POST /api/generate`` with ``keep_alive: 0`` (how Ollama's own ``stop`` unloads a model).
Each prints a table, or JSON with ``--json``. Exit codes: 0 done, 1 the gateway refused or
did not answer."""

from __future__ import annotations

import argparse
import json
import math
from typing import Any

from rich.console import Console
from rich.table import Table

from gateway.cli.client import ClientError, GatewayClient, add_connection_flags, fail

__all__ = ["add_parsers", "duration", "ps_rows", "show_text"]


def add_parsers(commands: argparse._SubParsersAction) -> None:
    common = argparse.ArgumentParser(add_help=False)
    add_connection_flags(common)
    common.add_argument("--json", action="store_true", help="print JSON instead of a table")

    ps = commands.add_parser(
        "ps",
        parents=[common],
        help="runners and backends: slots, KV cache, keep-alive, pid, GPU",
        description="Every backend of a running gateway: its model, slots busy/total, KV "
        "cache held, time until an idle runner unloads, pid and GPU of the runners it "
        "started. Needs the admin token (--api-key) when the gateway has one.",
    )
    ps.set_defaults(handler=_ps)
    listing = commands.add_parser(
        "list", aliases=["ls"], parents=[common], help="declared and served models"
    )
    listing.set_defaults(handler=_list)
    show = commands.add_parser(
        "show",
        parents=[common],
        help="a model's architecture, parameters, quantization, context, template",
    )
    show.add_argument("model")
    show.set_defaults(handler=_show)
    stop = commands.add_parser("stop", parents=[common], help="unload a model's runners now")
    stop.add_argument("model")
    stop.set_defaults(handler=_stop)


def _with_client(args: argparse.Namespace, work: Any) -> int:
    client = GatewayClient.from_args(args)
    try:
        return int(work(client))
    except ClientError as exc:
        return fail(exc)
    finally:
        client.close()


def _print_table(header: list[str], rows: list[list[str]]) -> None:
    table = Table(box=None, pad_edge=False, header_style="bold")
    for name in header:
        table.add_column(name, overflow="fold")
    for row in rows:
        table.add_row(*row)
    Console(soft_wrap=True).print(table)


# -- ps ------------------------------------------------------------------------------------
def ps_rows(data: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per backend, joined with the runner the gateway started for it (if any), and
    one per runner that has no backend yet (still loading)."""
    keep = {m["id"]: m.get("keep_alive") for m in data.get("models", [])}
    runners = {r.get("url"): r for r in data.get("runners", []) if r.get("url")}
    rows = []
    seen = set()
    for backend in data.get("backends", []):
        runner = runners.get(backend["url"])
        seen.add(backend["url"])
        rows.append(_ps_row(backend, runner, keep))
    for url, runner in runners.items():
        if url not in seen:
            rows.append(_ps_row(None, runner, keep))
    for runner in data.get("runners", []):
        if not runner.get("url"):
            rows.append(_ps_row(None, runner, keep))
    return rows


def _ps_row(
    backend: dict[str, Any] | None, runner: dict[str, Any] | None, keep: dict[str, Any]
) -> dict[str, Any]:
    backend = backend or {}
    runner = runner or {}
    model = runner.get("model") or backend.get("model")
    device = runner.get("device")
    return {
        "model": model,
        "backend": backend.get("backend") or runner.get("url"),
        "state": runner.get("state") or backend.get("state"),
        "slots_busy": backend.get("slots_busy", runner.get("inflight", 0)),
        "slots_total": backend.get("slots_total", 0),
        "kv_cache_tokens": backend.get("kv_cache_tokens"),
        "kv_cache_ratio": backend.get("kv_cache_ratio"),
        # None: not counting down (busy, loading), or a backend the gateway did not start.
        "unload_in_seconds": runner.get("unload_in_seconds"),
        "keep_alive_seconds": keep.get(model) if runner and model else None,
        "pid": runner.get("pid"),
        "container": runner.get("container"),
        "gpu": device.removeprefix("GPU ") if device and device.startswith("GPU") else None,
        "supervised": bool(runner),
    }


def _ps(args: argparse.Namespace) -> int:
    def work(client: GatewayClient) -> int:
        rows = ps_rows(client.get_json("/runners"))
        if args.json:
            print(json.dumps(rows, indent=2))
            return 0
        header = ["MODEL", "BACKEND", "STATE", "SLOTS", "KV CACHE", "UNTIL", "PID", "GPU"]
        _print_table(header, [_ps_cells(row) for row in rows])
        return 0

    return _with_client(args, work)


def _ps_cells(row: dict[str, Any]) -> list[str]:
    tokens, ratio = row["kv_cache_tokens"], row["kv_cache_ratio"]
    kv = "-" if tokens is None else f"{tokens} tok"
    if ratio is not None:
        kv += f" ({ratio:.0%})"
    return [
        str(row["model"] or "?"),
        str(row["backend"] or "-"),
        str(row["state"] or "-"),
        f"{row['slots_busy']}/{row['slots_total']}",
        kv,
        _until(row),
        str(row["pid"] or row["container"] or "-"),
        row["gpu"] or ("CPU" if row["supervised"] else "-"),
    ]


def _until(row: dict[str, Any]) -> str:
    """When an idle runner unloads, as Ollama's ``ps`` says it."""
    if not row["supervised"]:
        return "-"
    if row["unload_in_seconds"] is not None:
        return f"in {duration(row['unload_in_seconds'])}"
    keep = row["keep_alive_seconds"]
    if keep is None or (isinstance(keep, float) and math.isinf(keep)):
        return "forever"
    return "busy" if row["slots_busy"] else "-"


def duration(seconds: float) -> str:
    seconds = round(seconds)
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    if seconds >= 60:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds}s"


# -- list ----------------------------------------------------------------------------------
def _list(args: argparse.Namespace) -> int:
    def work(client: GatewayClient) -> int:
        cards = client.get_json("/v1/models")["data"]
        if args.json:
            print(json.dumps(cards, indent=2))
            return 0
        rows = []
        for card in cards:
            meta = card.get("meta") or {}
            replicas = meta.get("replicas") or {}
            ready = replicas.get("ready", meta.get("backends", 0))
            desired = replicas.get("desired")
            rows.append(
                [
                    card["id"],
                    str(meta.get("state", "-")),
                    f"{ready}/{desired}" if desired is not None else str(ready),
                    card.get("parent") or "",
                ]
            )
        _print_table(["MODEL", "STATE", "RUNNERS", "ALIAS OF"], rows)
        return 0

    return _with_client(args, work)


# -- show ----------------------------------------------------------------------------------
def _show(args: argparse.Namespace) -> int:
    def work(client: GatewayClient) -> int:
        answer = client.post_json("/api/show", {"model": args.model})
        if args.json:
            print(json.dumps(answer, indent=2))
            return 0
        print(show_text(args.model, answer))
        return 0

    return _with_client(args, work)


def show_text(model: str, answer: dict[str, Any]) -> str:
    """Ollama's ``show`` layout: the model's facts, its capabilities, its template."""
    details = answer.get("details") or {}
    info = answer.get("model_info") or {}
    arch = details.get("family") or info.get("general.architecture") or "?"
    params = details.get("parameter_size") or _count(info.get("general.parameter_count"))
    context = next((v for k, v in info.items() if k.endswith(".context_length")), None)
    embedding = next((v for k, v in info.items() if k.endswith(".embedding_length")), None)
    rows = [
        ("architecture", arch),
        ("parameters", params),
        ("quantization", details.get("quantization_level")),
        ("context length", context),
        ("embedding length", embedding),
        ("format", details.get("format")),
    ]
    lines = [f"  Model {model}"]
    lines += [f"    {name:<18}{value}" for name, value in rows if value not in (None, "")]
    capabilities = answer.get("capabilities") or []
    if capabilities:
        lines += ["", "  Capabilities"] + [f"    {c}" for c in capabilities]
    template = (answer.get("template") or "").strip()
    if template:
        shown = template.splitlines()
        lines += ["", "  Template"] + [f"    {line}" for line in shown[:12]]
        if len(shown) > 12:
            lines.append(f"    … ({len(shown) - 12} more lines; --json shows all)")
    return "\n".join(lines)


def _count(value: Any) -> str | None:
    if not isinstance(value, int | float) or value <= 0:
        return None
    for unit, size in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if value >= size:
            return f"{value / size:.1f}{unit}"
    return str(int(value))


# -- stop ----------------------------------------------------------------------------------
def _stop(args: argparse.Namespace) -> int:
    def work(client: GatewayClient) -> int:
        answer = client.post_json("/api/generate", {"model": args.model, "keep_alive": 0})
        print(json.dumps(answer) if args.json else f"Stopped {args.model}.")
        return 0

    return _with_client(args, work)
