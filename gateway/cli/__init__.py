"""The ``llama-gateway`` command: ``serve`` runs the gateway; every other command talks to a
running gateway over HTTP, as Ollama's CLI talks to its server (``keys`` to the shared Redis).
Nothing in ``gateway/`` imports this package."""

from __future__ import annotations

import argparse
import sys
from importlib.metadata import PackageNotFoundError, version

from gateway.cli import chat, keys, models, pull, runners, serve

__all__ = ["main"]

_DESCRIPTION = """\
An OpenAI-compatible gateway in front of llama.cpp's llama-server.

Start one with `llama-gateway serve --model NAME=FILE.gguf` (or `make run` in the checkout);
then, from another terminal: `llama-gateway run NAME` to chat, `ps` to see the runners,
`pull hf:ORG/REPO:QUANT` to fetch a model. Client commands reach the gateway at --url
(env LLAMA_GATEWAY_URL, default http://127.0.0.1:12434)."""


def _version() -> str:
    try:
        return version("llama-gateway")
    except PackageNotFoundError:  # run from a checkout that was never installed
        return "unknown"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="llama-gateway",
        description=_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"llama-gateway {_version()}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="command")
    serve.add_parser(commands)
    chat.add_parser(commands)
    runners.add_parsers(commands)
    pull.add_parser(commands)
    keys.add_parser(commands)
    models.add_parser(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.handler(args))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
