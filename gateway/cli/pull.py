"""``llama-gateway pull SOURCE``: download a GGUF into the models folder, with a progress bar
per file (bytes, rate, time left). SOURCE: an ``https://`` URL, ``hf:ORG/REPO:QUANT`` or
``hf:ORG/REPO/FILE.gguf`` (against ``$HF_ENDPOINT``; ``$HF_TOKEN`` for private repositories).
An interrupted pull resumes where it stopped. The model can then be served by its name:
``llama-gateway serve --model NAME``. Exit codes: 0 done, 1 the pull failed, 2 bad input."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import TYPE_CHECKING

from gateway.config import SettingsError, load_settings

if TYPE_CHECKING:
    from gateway.models import PullEvent

__all__ = ["add_parser"]


def add_parser(commands: argparse._SubParsersAction) -> None:
    command = commands.add_parser(
        "pull",
        help="download a GGUF model (URL, hf:ORG/REPO:QUANT, hf:ORG/REPO/FILE.gguf)",
        description=__doc__,
    )
    command.add_argument("source", help="https://…/FILE.gguf, hf:ORG/REPO:QUANT or hf:ORG/REPO/F")
    command.add_argument("--name", help="save it under this name (default: the file's name)")
    command.add_argument(
        "--models-dir", help="where to put it (default ~/.cache/llama-gateway/models)"
    )
    command.add_argument("--json", action="store_true", help="print progress as NDJSON")
    command.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    # Imported here, not at the command line's start: aiohttp is a third of a second.
    from gateway.models import PullError, models_folder, pull

    try:
        settings = load_settings({"models_dir": args.models_dir})
    except SettingsError as exc:
        print(f"llama-gateway: {exc}", file=sys.stderr)
        return 2
    folder = models_folder(settings)
    events = pull(
        args.source,
        folder,
        hf_endpoint=settings.hf_endpoint,
        hf_token=settings.hf_token,
        name=args.name,
    )
    try:
        last = asyncio.run(_show_json(events) if args.json else _show_bars(events))
    except PullError as exc:
        print(f"llama-gateway: {exc.message}", file=sys.stderr)
        return 2 if exc.status == 400 else 1
    if not args.json and last is not None:
        print(f"pulled {last.model} into {last.path}")
        print(f"serve it with: llama-gateway serve --model {last.model}")
    return 0


async def _show_json(events: object) -> PullEvent | None:
    last = None
    async for event in events:  # type: ignore[attr-defined]
        print(json.dumps(event.to_dict()), flush=True)
        last = event
    return last


async def _show_bars(events: object) -> PullEvent | None:
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TaskID,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    console = Console(stderr=True)
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
    )
    tasks: dict[str, TaskID] = {}
    last = None
    with Progress(*columns, console=console, transient=False) as progress:
        async for event in events:  # type: ignore[attr-defined]
            last = event
            if event.completed is None:
                progress.console.print(event.status)
                continue
            task = tasks.get(event.status)
            if task is None:
                task = tasks[event.status] = progress.add_task(event.status, total=event.total)
            progress.update(task, completed=event.completed, total=event.total)
    return last
