"""``llama-gateway keys create|list|show|update|revoke``: manage API keys in the shared Redis.

Works on the same store as the gateway's admin API (``--redis-url``, or the environment's
``LLAMA_GATEWAY_REDIS_URL``); ``memory://`` is refused, as keys made there would vanish with
this process. Prints a table, or JSON with ``--json``. Exit codes: 0 done, 1 not found (or the
store unreachable), 2 bad input.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from gateway.config import SettingsError, load_settings
from gateway.errors import GatewayError, InvalidRequest, KeyNotFound

if TYPE_CHECKING:
    from gateway.store.apikeys import ApiKey

_LIMITS = ("rpm", "tpm", "max_concurrency", "daily_tokens", "monthly_tokens")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_UNLIMITED = ("none", "unlimited")


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    keys = subparsers.add_parser(
        "keys",
        help="manage API keys",
        description="Manage API keys in the shared Redis (not memory://). "
        "Exit codes: 0 done, 1 not found or store unreachable, 2 bad input.",
    )
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--redis-url", help="redis://host:port/db (env LLAMA_GATEWAY_REDIS_URL)")
    common.add_argument("--json", action="store_true", help="print JSON instead of a table")
    commands = keys.add_subparsers(dest="keys_command", required=True, metavar="COMMAND")

    create = commands.add_parser("create", parents=[common], help="make a new key")
    create.add_argument("--name", required=True, help="who or what the key is for")
    _limit_flags(create, clearable=False)
    create.add_argument("--disable", action="store_true", help="create it disabled")

    commands.add_parser("list", parents=[common], help="every key, revoked ones too")
    show = commands.add_parser("show", parents=[common], help="one key")
    show.add_argument("id")

    update = commands.add_parser("update", parents=[common], help="change a key")
    update.add_argument("id")
    update.add_argument("--name", help="a new name")
    _limit_flags(update, clearable=True)
    state = update.add_mutually_exclusive_group()
    state.add_argument(
        "--enable", dest="enabled", action="store_const", const=True, help="let it work again"
    )
    state.add_argument(
        "--disable", dest="enabled", action="store_const", const=False, help="stop it for now"
    )

    revoke = commands.add_parser("revoke", parents=[common], help="stop a key for good")
    revoke.add_argument("id")
    keys.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    try:
        url = load_settings({"redis_url": args.redis_url}).redis_url
    except SettingsError as exc:
        return _fail(str(exc), 2)
    if url.startswith("memory://"):
        return _fail(
            "keys need a shared store: give --redis-url redis://… or set "
            "LLAMA_GATEWAY_REDIS_URL (memory:// lives only inside one gateway process)",
            2,
        )
    try:
        return asyncio.run(_run(args, url))
    except InvalidRequest as exc:
        return _fail(exc.message, 2)
    except KeyNotFound as exc:
        return _fail(exc.message, 1)
    except GatewayError as exc:
        return _fail(exc.message, 1)


async def _run(args: argparse.Namespace, url: str) -> int:
    # Imported here: the Redis client is for this command only, not every command's start.
    from gateway.store.apikeys import KeyStore
    from gateway.store.connection import connect

    redis = connect(url)
    try:
        store = KeyStore(redis)
        command = args.keys_command
        if command == "create":
            key, secret = await store.create(**_changes(args), disabled=args.disable)
            _print_key(key, args.json, secret=secret)
        elif command == "list":
            _print_list(await store.list(), args.json)
        elif command == "show":
            found = await store.get(args.id)
            if found is None:
                raise KeyNotFound(f"No API key with id '{args.id}'.")
            _print_key(found, args.json)
        elif command == "update":
            changes = _changes(args)
            if args.enabled is not None:
                changes["disabled"] = not args.enabled
            _print_key(await store.update(args.id, **changes), args.json)
        elif command == "revoke":
            _print_key(await store.revoke(args.id), args.json)
        return 0
    finally:
        await redis.aclose()


# -- flags -> fields -------------------------------------------------------------------------
def _limit_flags(parser: argparse.ArgumentParser, *, clearable: bool) -> None:
    clear = " ('none' removes it)" if clearable else ""
    limit = _limit if clearable else _positive
    parser.add_argument("--rpm", type=limit, metavar="N", help="requests per minute" + clear)
    parser.add_argument("--tpm", type=limit, metavar="N", help="tokens per minute" + clear)
    parser.add_argument(
        "--max-concurrency", type=limit, metavar="N", help="requests in flight" + clear
    )
    parser.add_argument(
        "--daily-tokens", type=limit, metavar="N", help="tokens per UTC day" + clear
    )
    parser.add_argument(
        "--monthly-tokens", type=limit, metavar="N", help="tokens per UTC month" + clear
    )
    parser.add_argument(
        "--models",
        type=_models,
        metavar="A,B",
        help="models it may use, comma-separated ('' for all)",
    )
    parser.add_argument(
        "--weight", type=float, metavar="W", help="share of a busy model (default 1)"
    )
    parser.add_argument(
        "--priority", type=int, metavar="P", help="order of its own waiting requests"
    )
    parser.add_argument(
        "--expires-in",
        type=_duration if not clearable else _duration_or_never,
        metavar="DURATION",
        help="e.g. 3600s, 90m, 12h, 30d, 2w" + (" ('never' removes it)" if clearable else ""),
    )


def _changes(args: argparse.Namespace) -> dict[str, Any]:
    changes: dict[str, Any] = {}
    for name in ("name", *_LIMITS, "models", "weight", "priority"):
        value = getattr(args, name, None)
        if value is not None:
            changes[name] = None if value == _UNLIMITED[0] else value
    if args.expires_in is not None:
        changes["expires_at"] = None if args.expires_in == "never" else args.expires_in
    return changes


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def _limit(text: str) -> int | str:
    return _UNLIMITED[0] if text.lower() in _UNLIMITED else _positive(text)


def _models(text: str) -> list[str]:
    return [name.strip() for name in text.split(",") if name.strip()]


def _duration(text: str) -> int:
    """``30d`` -> the unix time 30 days from now."""
    match = re.fullmatch(r"(\d+)([smhdw]?)", text.strip())
    if match is None or int(match[1]) == 0:
        raise argparse.ArgumentTypeError(f"not a duration like 90m, 12h or 30d: {text!r}")
    return int(time.time()) + int(match[1]) * _UNITS[match[2] or "s"]


def _duration_or_never(text: str) -> int | str:
    return "never" if text.strip().lower() == "never" else _duration(text)


# -- output --------------------------------------------------------------------------------
def _print_key(key: ApiKey, as_json: bool, *, secret: str | None = None) -> None:
    record = key.to_dict()
    if as_json:
        print(json.dumps({"id": key.id, "key": secret, **record} if secret else record))
        return
    rows = [("id", key.id), ("name", key.name), ("state", key.state(time.time()))]
    rows += [(name, _cell(record[name])) for name in (*_LIMITS, "models", "weight", "priority")]
    rows += [(name, _when(record[name])) for name in ("created", "expires_at", "revoked_at")]
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")
    if secret:
        print(f"\nkey: {secret}\n(shown once; it cannot be retrieved later)")


def _print_list(found: list[ApiKey], as_json: bool) -> None:
    if as_json:
        print(json.dumps([key.to_dict() for key in found]))
        return
    now = time.time()
    header = ("ID", "NAME", "STATE", "RPM", "TPM", "CONC", "DAILY", "MONTHLY", "MODELS")
    rows = [header] + [
        (
            key.id,
            key.name,
            key.state(now),
            *(_cell(getattr(key, name)) for name in _LIMITS),
            _cell(list(key.models)),
        )
        for key in found
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    for row in rows:
        print(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        )


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, list | tuple):
        return ",".join(value) if value else "all"
    return str(value)


def _when(value: int | None) -> str:
    if value is None:
        return "-"
    return datetime.fromtimestamp(value, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _fail(message: str, code: int) -> int:
    print(f"llama-gateway keys: {message}", file=sys.stderr)
    return code
