"""The ``llama-gateway`` command: turns flags into :class:`Settings` and serves the app.
Nothing imports this module."""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Any

from gateway import keys_cli, models_cli
from gateway.config import (
    DEFAULT_PORT,
    ROUTING_POLICIES,
    Settings,
    SettingsError,
    load_settings,
)
from gateway.telemetry.logs import configure_logging


def _serve_parser(commands: argparse._SubParsersAction) -> None:
    serve = commands.add_parser("serve", help="run the gateway")
    serve.add_argument("--config", help="YAML settings file (env LLAMA_GATEWAY_CONFIG)")
    serve.add_argument("--host", help="address to bind (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help=f"port to bind (default {DEFAULT_PORT})")
    serve.add_argument(
        "--backend",
        dest="backends",
        action="append",
        metavar="URL",
        help="a running llama-server to route to (repeatable)",
    )
    serve.add_argument(
        "--model",
        dest="models",
        action="append",
        metavar="[NAME=]PATH",
        help="start a local llama-server for this GGUF file; NAME=PATH names it",
    )
    serve.add_argument("--parallel", type=int, help="slots per started runner (default 4)")
    serve.add_argument("--ctx-size", type=int, help="context per started runner (default 4096)")
    serve.add_argument("--llama-server-bin", help="llama-server binary (env LLAMA_SERVER_BIN)")
    serve.add_argument(
        "--routing",
        choices=ROUTING_POLICIES,
        help="backend choice policy (default affinity; env LLAMA_GATEWAY_ROUTING)",
    )
    serve.add_argument("--queue-size", type=int, help="requests that may wait per model")
    serve.add_argument("--queue-timeout", type=float, help="seconds a request may wait")
    serve.add_argument("--lease-ttl", type=float, help="seconds a slot lease lives unrenewed")
    serve.add_argument("--probe-interval", type=float, help="seconds between backend probes")
    serve.add_argument("--max-body-bytes", type=int, help="largest request body")
    serve.add_argument("--redis-url", help="memory:// (default) or redis://host:port/db")
    serve.add_argument("--admin-token", help="token for the admin API")
    serve.add_argument("--no-auth", action="store_const", const=True, help="serve without API keys")
    serve.add_argument("--log-level", choices=("debug", "info", "warning", "error"))


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    skip = {"command", "config", "models", "parallel", "ctx_size"}
    values = {k: v for k, v in vars(args).items() if k not in skip and v is not None}
    if args.models:
        # A --model is pinned: loaded at start and kept (keep_alive -1), as before the scheduler.
        spec: dict[str, Any] = {"keep_alive": -1, "preload": True}
        if args.parallel is not None:
            spec["parallel"] = args.parallel
        if args.ctx_size is not None:
            spec["ctx_size"] = args.ctx_size
        values["models"] = [{**_model_arg(arg), **spec} for arg in args.models]
    return values


def _model_arg(arg: str) -> dict[str, str]:
    """``PATH`` or ``NAME=PATH``: the name is the model id clients ask for."""
    name, sep, path = arg.partition("=")
    if sep and name and "/" not in name:
        return {"name": name, "path": path}
    return {"path": arg}


def _warn_about_access(settings: Settings) -> None:
    log = logging.getLogger("gateway")
    loopback = settings.host in ("127.0.0.1", "localhost", "::1")
    if settings.no_auth and not loopback:
        log.warning(
            "serving %s WITHOUT API keys (--no-auth): anyone who can reach it may use it",
            settings.host,
        )
    if not settings.no_auth and not settings.admin_token and settings.redis_url == "memory://":
        log.warning(
            "API keys are required but no admin token is set and the store is "
            "memory://: no key can be created; set --admin-token or --redis-url"
        )


def serve(args: argparse.Namespace) -> int:
    import uvicorn

    from gateway.app import create_app

    try:
        settings = load_settings(_overrides(args), config_file=args.config)
    except SettingsError as exc:
        print(f"llama-gateway: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level)
    discovers = settings.kubernetes is not None or settings.docker.discover
    if not settings.backends and not settings.models and not discovers:
        print(
            "llama-gateway: nothing to serve; give --model PATH or --backend URL", file=sys.stderr
        )
        return 2
    _warn_about_access(settings)
    config = uvicorn.Config(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        loop="uvloop",
        http="httptools",
        lifespan="on",
        access_log=False,
        log_config=None,  # uvicorn's loggers go through configure_logging's JSON handler
        log_level=settings.log_level,
        timeout_graceful_shutdown=10,
    )
    server = uvicorn.Server(config)
    server.run()
    # uvicorn reports a failed lifespan (runner would not start) only by not serving.
    return 0 if server.started else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="llama-gateway", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    _serve_parser(commands)
    keys_cli.add_parser(commands)
    models_cli.add_parser(commands)
    args = parser.parse_args(argv)
    if args.command == "serve":
        return serve(args)
    if args.command == "keys":
        return keys_cli.run(args)
    if args.command == "models":
        return models_cli.run(args)
    parser.error(f"unknown command {args.command}")
    return 2


if __name__ == "__main__":
    sys.exit(main())
