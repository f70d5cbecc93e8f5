"""``llama-gateway serve``: flags become :class:`Settings`, the settings are checked, and the
app is served by uvicorn.

Everything that can be known to fail is checked before anything starts — the settings, the
model files, the llama-server binary, the port (bound here and handed to uvicorn, so no other
process can take it in between) — and each failure is one plain line saying what to do: exit
2 for flags or config that cannot be used, 1 for anything else (a missing file, a busy port,
a runner that died while loading).
"""

from __future__ import annotations

import argparse
import logging
import socket
import sys
from pathlib import Path
from typing import Any

from gateway.config import DEFAULT_PORT, LOG_FORMATS, ROUTING_POLICIES, Settings, SettingsError
from gateway.config import load_settings as _load_settings
from gateway.telemetry.logs import configure_logging

log = logging.getLogger("gateway")

__all__ = ["add_parser", "model_arg", "overrides", "serve"]


class StartupError(Exception):
    """A reason not to start, told as one line; ``code`` is the exit status."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


def add_parser(commands: argparse._SubParsersAction) -> None:
    serve = commands.add_parser(
        "serve",
        help="run the gateway",
        description="Run the gateway: route to running llama-servers (--backend) or start "
        "runners for GGUF files or pulled models (--model). Exit codes: 2 flags or config "
        "that cannot be used, 1 anything else that stops it starting.",
    )
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
        help="start a local llama-server for this GGUF file or pulled model; NAME=PATH names it",
    )
    serve.add_argument("--parallel", type=int, help="slots per --model runner (default 4)")
    serve.add_argument("--ctx-size", type=int, help="context per --model runner (default 4096)")
    serve.add_argument(
        "--embeddings",
        action="store_true",
        default=None,
        help="start the --model runners for embeddings (/v1/embeddings)",
    )
    serve.add_argument("--llama-server-bin", help="llama-server binary (env LLAMA_SERVER_BIN)")
    serve.add_argument(
        "--models-dir", help="where pulled models are found (default ~/.cache/llama-gateway/models)"
    )
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
    serve.add_argument(
        "--header-timeout", type=float, help="seconds a client has to send its headers (10)"
    )
    serve.add_argument("--max-connections", type=int, help="open connections before 503s")
    serve.add_argument("--redis-url", help="memory:// (default) or redis://host:port/db")
    serve.add_argument("--admin-token", help="token for the admin API")
    serve.add_argument(
        "--metrics-token", help="Bearer token /metrics requires (env LLAMA_GATEWAY_METRICS_TOKEN)"
    )
    serve.add_argument(
        "--cors-origin",
        dest="cors_origins",
        action="append",
        metavar="ORIGIN",
        help="a browser origin allowed to call the API (repeatable; none by default)",
    )
    serve.add_argument("--no-auth", action="store_const", const=True, help="serve without API keys")
    serve.add_argument("--log-level", choices=("debug", "info", "warning", "error"))
    serve.add_argument(
        "--log-format", choices=LOG_FORMATS, help="auto: text on a terminal, else JSON"
    )
    serve.set_defaults(handler=serve_command)


_MODEL_FLAGS = {"models", "parallel", "ctx_size", "embeddings"}


def overrides(args: argparse.Namespace) -> dict[str, Any]:
    skip = {"command", "config", "handler", *_MODEL_FLAGS}
    values = {k: v for k, v in vars(args).items() if k not in skip and v is not None}
    if args.models:
        # A --model is pinned: loaded at start and kept (keep_alive -1), as before the scheduler.
        spec: dict[str, Any] = {"keep_alive": -1, "preload": True}
        if args.parallel is not None:
            spec["parallel"] = args.parallel
        if args.ctx_size is not None:
            spec["ctx_size"] = args.ctx_size
        if getattr(args, "embeddings", None):
            spec["embeddings"] = True
        values["models"] = [{**model_arg(arg), **spec} for arg in args.models]
    return values


def model_arg(arg: str) -> dict[str, str]:
    """``PATH`` or ``NAME=PATH``: the name is the model id clients ask for."""
    name, sep, path = arg.partition("=")
    if sep and name and "/" not in name:
        return {"name": name, "path": path}
    return {"path": arg}


# -- the checks before anything starts -----------------------------------------------------
def load_settings(args: argparse.Namespace) -> Settings:
    from gateway.models.library import models_folder, resolve_models

    try:
        settings = _load_settings(overrides(args), config_file=args.config)
    except SettingsError as exc:
        raise StartupError(str(exc), 2) from None
    discovers = settings.kubernetes is not None or settings.docker.discover
    if not settings.backends and not settings.models and not discovers:
        raise StartupError("nothing to serve; give --model PATH or --backend URL", 2)
    settings, missing = resolve_models(settings)
    if missing:
        raise StartupError(
            f"model file {missing[0]!r} does not exist, and no pulled model has that name "
            f"in {models_folder(settings)}; give a GGUF path or `llama-gateway pull` it first"
        )
    for spec in settings.models:
        for role, path in (("model file", spec.path), ("mmproj file", spec.mmproj)):
            if path and not Path(path).expanduser().is_file():
                raise StartupError(f"{role} {path!r} does not exist; check the path")
    return settings


def check_binary(settings: Settings) -> None:
    if not settings.models or settings.runner_driver != "process":
        return
    from gateway.errors import RunnerError
    from gateway.runners.binary import find_llama_server

    try:
        find_llama_server(settings.llama_server_bin, settings.cache_dir)
    except RunnerError as exc:
        raise StartupError(str(exc)) from None


def bind(settings: Settings) -> socket.socket:
    """The listening socket, bound now, so that a busy port is found before any runner."""
    family = socket.AF_INET6 if ":" in settings.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((settings.host, settings.port))
    except OSError as exc:
        sock.close()
        where = f"{settings.host}:{settings.port}"
        if exc.errno == 98:  # EADDRINUSE
            raise StartupError(
                f"port {settings.port} is already in use on {settings.host}; stop what holds "
                "it or choose another with --port"
            ) from None
        raise StartupError(f"cannot listen on {where}: {exc.strerror}; check --host") from None
    sock.listen(2048)
    return sock


def _warn_about_access(settings: Settings) -> None:
    loopback = settings.host in ("127.0.0.1", "localhost", "::1")
    if settings.no_auth and not loopback:
        log.warning(
            "serving %s WITHOUT API keys (--no-auth): anyone who can reach it may use it",
            settings.host,
        )
    if (
        not settings.no_auth
        and not settings.admin_token
        and settings.redis_url.startswith("memory://")
    ):
        log.warning(
            "API keys are required but no admin token is set and the store is "
            "memory://: no key can be created; set --admin-token or --redis-url"
        )


# -- serving -------------------------------------------------------------------------------
def serve_command(args: argparse.Namespace) -> int:
    try:
        settings = load_settings(args)
        configure_logging(settings.log_level, log_format=settings.log_format)
        check_binary(settings)
        sock = bind(settings)
    except StartupError as exc:
        print(f"llama-gateway: {exc}", file=sys.stderr)
        return exc.code
    _warn_about_access(settings)
    return serve(settings, sock)


def serve(settings: Settings, sock: socket.socket) -> int:
    import uvicorn

    class _Server(uvicorn.Server):
        """Ends the console's event streams first: uvicorn tells an open stream nothing,
        so shutdown would otherwise wait out its whole grace period for them."""

        async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
            app.state.sampler.close()
            await super().shutdown(sockets)

    from gateway.app import create_app
    from gateway.cli.collector import tune_for_serving
    from gateway.cli.http_limits import HeaderLimits, limited_protocol
    from gateway.cli.startup import QuietLifespan, failure_line, quiet_uvicorn_failure

    try:
        app = create_app(settings)
    except ValueError as exc:  # a setting only the part it configures can judge (redis_url…)
        print(f"llama-gateway: invalid setting: {exc}", file=sys.stderr)
        return 2
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        loop="uvloop",
        http=limited_protocol(
            HeaderLimits(
                timeout=settings.header_timeout,
                max_bytes=settings.max_header_bytes,
                max_count=settings.max_header_count,
            )
        ),
        lifespan="on",
        access_log=False,
        log_config=None,  # uvicorn's loggers go through configure_logging's handler
        log_level=settings.log_level,
        timeout_graceful_shutdown=10,
        timeout_keep_alive=settings.keep_alive_timeout,  # type: ignore[arg-type]
        limit_concurrency=settings.max_connections,
        server_header=False,  # no product or version for a scanner to match
    )
    config.load()
    config.lifespan_class = QuietLifespan
    quiet_uvicorn_failure()
    server = _Server(config)
    tune_for_serving()
    log.info("listening on http://%s:%d", settings.host, settings.port)
    try:
        server.run(sockets=[sock])
    except SystemExit:
        pass  # uvicorn's exit after a failed start: told below, in one line
    finally:
        sock.close()
    if server.started:
        return 0
    lifespan = getattr(server, "lifespan", None)  # set once the start began
    failure = lifespan.failure if isinstance(lifespan, QuietLifespan) else None
    print(f"llama-gateway: {failure_line(failure)}", file=sys.stderr)
    return 1
