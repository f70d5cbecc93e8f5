"""The client: the part of redis-py's ``redis.asyncio.Redis`` the gateway uses, answering from
a :class:`Server` in this process — no socket, no RESP.

Its command methods are redis-py's own (the class mixes in ``AsyncCoreCommands``, which builds
each command's arguments and hands them to :meth:`EmbeddedRedis.execute_command`), the
arguments are encoded by redis-py's ``Encoder`` and the replies pass through redis-py's RESP2
response callbacks and error parser: what a caller gets — ``bytes``, ``int``, ``None``,
lists, the dict of ``hgetall``, the exception classes (``ResponseError``, ``NoScriptError``) —
is what redis-py with ``decode_responses=False`` gets from a real Redis.

``pipeline(transaction=False)`` queues commands on ``command_stack`` and runs them all in one
step on :meth:`EmbeddedPipeline.execute`, errors in place of replies when
``raise_on_error=False``. ``register_script`` gives redis-py's ``AsyncScript``. ``send_commands`` is
``StoreClient.send_commands``, the request path's round trip of scripts. Every round trip
lets the event loop run other tasks once before it is answered, as a socket would: code
written against Redis may count on that (a task started just before a store call has run by
the time the reply comes). ``BLPOP``
waits on a future that a push from any task of this process resolves — no polling — and
honours both its timeout and cancellation (an element handed to a cancelled waiter goes back
to the head of its list).
"""

from __future__ import annotations

import asyncio
from collections.abc import Generator, Sequence
from typing import Any

import redis.asyncio as redis
from redis._parsers import Encoder
from redis._parsers.base import BaseParser
from redis.asyncio.client import EMPTY_RESPONSE, NEVER_DECODE
from redis.client import CaseInsensitiveDict
from redis.commands.core import AsyncCoreCommands
from redis.connection import DEFAULT_RESP_VERSION
from redis.exceptions import ResponseError
from redis.utils import safe_str

from gateway.store.embedded.resp3 import reshape
from gateway.store.embedded.server import Server
from gateway.store.embedded.values import CommandError, Status, parse_float

__all__ = ["EmbeddedPipeline", "EmbeddedRedis"]

#: The response callbacks of a redis-py client as ``connect("redis://…")`` makes it (one is
#: built, never connected, to read them): the same protocol's, the same parsing.
_PROTOTYPE = redis.Redis()
_CALLBACKS: dict[str, Any] = {
    str(name).upper(): c for name, c in _PROTOTYPE.response_callbacks.items()
}
#: The RESP version such a client speaks (redis-py 8: 3) — the reply shapes to give.
PROTOCOL = int(_PROTOTYPE.connection_pool.connection_kwargs.get("protocol") or DEFAULT_RESP_VERSION)
del _PROTOTYPE
_SCRIPT_RUNS = frozenset({"EVALSHA", "EVAL", "EVALSHA_RO", "EVAL_RO"})
_BLOCKING = frozenset({"BLPOP"})


class _Pool:
    """What redis-py's ``AsyncScript`` and ``Redis`` ask of a client's pool: its encoder, its
    connections' options (none)."""

    def __init__(self, encoder: Encoder) -> None:
        self.encoder = encoder
        self.connection_kwargs: dict[str, Any] = {}

    def get_encoder(self) -> Encoder:
        return self.encoder


class _Calls:
    """Encoding, running and reading one command, shared by the client and its pipelines."""

    server: Server
    _encode: Any
    #: What redis-py's command mixins declare; nothing here dispatches events.
    _event_dispatcher: Any = None

    def _run(self, args: tuple[Any, ...], options: dict[str, Any]) -> Any:
        name = args[0]
        if type(name) is str and " " in name:  # "SCRIPT FLUSH": sent as separate words
            args = (*name.split(), *args[1:])
        encode = self._encode
        encoded = [a if type(a) is bytes else encode(a) for a in args]
        if name in _BLOCKING:  # in a pipeline, or a script: does not block, as in Redis
            if len(encoded) < 3:
                raise _error("ERR wrong number of arguments for 'blpop' command")
            _timeout(encoded[-1])
            return _read(name, self.server.pop_first(encoded[1:-1]), options)
        try:
            reply = self.server.execute(encoded)
        except CommandError as exc:
            if EMPTY_RESPONSE in options:
                return options[EMPTY_RESPONSE]
            raise _error(exc.message) from None
        if name in _SCRIPT_RUNS:
            return _script_reply(reply)
        if PROTOCOL == 3:
            reply = reshape(encoded, reply)
        return _read(name, reply, options)


class EmbeddedRedis(_Calls, redis.Redis):  # type: ignore[misc]
    """``memory://``'s client: ``EmbeddedRedis()`` is a fresh, empty store.

    A ``redis.asyncio.Redis`` by class — so code that checks for one (Litestar validates a
    handler's ``Redis`` dependency) takes it — though not by state: redis-py's ``__init__``
    does not run (no pool, no connection), and what needs a connection (``pubsub``,
    ``monitor``, ``transaction``…) is not offered."""

    def __init__(self, server: Server | None = None) -> None:
        self.server = server if server is not None else Server()
        encoder = Encoder(encoding="utf-8", encoding_errors="strict", decode_responses=False)
        self._encode = _encoding(encoder)
        self.connection_pool = _Pool(encoder)  # type: ignore[assignment]
        self.connection = None
        self.single_connection_client = False
        self.response_callbacks = CaseInsensitiveDict(_CALLBACKS)

    def __repr__(self) -> str:
        return f"<{type(self).__module__}.{type(self).__name__}(memory://)>"

    def __await__(self) -> Generator[Any, None, EmbeddedRedis]:
        return self.initialize().__await__()

    def get_encoder(self) -> Encoder:
        return self.connection_pool.get_encoder()

    async def execute_command(self, *args: Any, **options: Any) -> Any:
        await asyncio.sleep(0)  # a round trip: other tasks run before the reply, as on Redis
        if args[0] in _BLOCKING:
            return await self._block(args, options)
        return self._run(args, options)

    async def send_commands(
        self, commands: Sequence[Sequence[Any]], *, sent: asyncio.Future[None] | None = None
    ) -> list[Any]:
        """``StoreClient.send_commands``: run ``commands`` (each a command's arguments) in
        one step; their raw replies (no response callbacks, as hiredis reads them), an error
        reply as its ``ResponseError``. ``sent`` is resolved once they have run."""
        await asyncio.sleep(0)
        encode, execute = self._encode, self.server.execute
        replies: list[Any] = []
        for command in commands:
            encoded = [a if type(a) is bytes else encode(a) for a in command]
            try:
                reply = execute(encoded)
            except CommandError as exc:
                replies.append(_error(exc.message))
                continue
            kind = type(reply)
            if kind is Status:
                reply = bytes(reply)
            elif command[0] in _SCRIPT_RUNS:
                reply = _script_reply(reply) if kind is list else reply
            elif PROTOCOL == 3:
                reply = reshape(encoded, reply)
            replies.append(reply)
        if sent is not None and not sent.done():  # (cancelled by a waiter that left)
            sent.set_result(None)
        return replies

    async def _block(self, args: tuple[Any, ...], options: dict[str, Any]) -> Any:
        keys = [a if type(a) is bytes else self._encode(a) for a in args[1:-1]]
        if not keys:
            raise _error(f"ERR wrong number of arguments for '{args[0].lower()}' command")
        timeout = _timeout(self._encode(args[-1]))
        found = self.server.pop_first(keys)
        if found is None:
            waiter: asyncio.Future[list[bytes]] = asyncio.get_running_loop().create_future()
            self.server.block(keys, waiter)
            try:
                async with asyncio.timeout(timeout or None):
                    found = await waiter
            except TimeoutError:
                found = waiter.result() if waiter.done() and not waiter.cancelled() else None
            except asyncio.CancelledError:
                if waiter.done() and not waiter.cancelled():  # handed over, never taken
                    self.server.give_back(*waiter.result())
                raise
            finally:
                self.server.unblock(keys, waiter)
        return _read(args[0], found, options)

    def pipeline(  # type: ignore[override]
        self, transaction: bool = True, shard_hint: Any = None
    ) -> EmbeddedPipeline:
        """A pipeline; ``transaction`` changes nothing: every command runs to completion
        before the next, in order, with nothing between them."""
        return EmbeddedPipeline(self)

    async def aclose(self, close_connection_pool: bool | None = None) -> None:
        """Nothing to close: the store lives as long as this object."""

    async def close(self, close_connection_pool: bool | None = None) -> None:
        await self.aclose()

    async def initialize(self) -> EmbeddedRedis:
        return self

    async def __aenter__(self) -> EmbeddedRedis:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


class EmbeddedPipeline(_Calls, AsyncCoreCommands):  # type: ignore[misc]
    """redis-py's non-transactional pipeline: ``command_stack`` of ``(args, options)``."""

    def __init__(self, client: EmbeddedRedis) -> None:
        self.client = client
        self.server = client.server
        self._encode = client._encode
        self.command_stack: list[tuple[tuple[Any, ...], dict[str, Any]]] = []
        self.scripts: set[Any] = set()

    def execute_command(self, *args: Any, **options: Any) -> EmbeddedPipeline:
        self.command_stack.append((args, options))
        return self

    def __len__(self) -> int:
        return len(self.command_stack)

    def __bool__(self) -> bool:
        return True

    def __await__(self) -> Generator[Any, None, EmbeddedPipeline]:
        return self._itself().__await__()

    async def _itself(self) -> EmbeddedPipeline:
        return self

    async def __aenter__(self) -> EmbeddedPipeline:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.reset()

    async def reset(self) -> None:  # type: ignore[override]
        """Drop what is queued (redis-py's ``Pipeline.reset``, not the ``RESET`` command)."""
        self.command_stack = []
        self.scripts = set()

    async def execute(self, raise_on_error: bool = True) -> list[Any]:
        await asyncio.sleep(0)  # a round trip, as in EmbeddedRedis.execute_command
        stack, self.command_stack = self.command_stack, []
        self.scripts = set()
        replies: list[Any] = []
        for args, options in stack:
            try:
                replies.append(self._run(args, options))
            except ResponseError as exc:
                replies.append(exc)
        if raise_on_error:
            for number, reply in enumerate(replies, 1):
                if isinstance(reply, ResponseError):
                    command = " ".join(map(safe_str, stack[number - 1][0]))
                    reply.args = (
                        f"Command # {number} ({command[:100]}) of pipeline caused error: "
                        f"{reply.args}",
                        *reply.args[1:],
                    )
                    raise reply
        return replies


def _encoding(encoder: Encoder) -> Any:
    """redis-py's ``Encoder.encode`` (UTF-8 text, ``repr`` of numbers), its common cases
    without the call chain."""
    general = encoder.encode

    def encode(value: Any) -> bytes:
        kind = type(value)
        if kind is str:
            return value.encode()
        if kind is int:
            return b"%d" % value
        return bytes(general(value))

    return encode


def _error(message: str) -> Exception:
    """The exception redis-py raises for the error reply ``message``."""
    exc: Exception = BaseParser.parse_error(message)
    return exc


def _timeout(value: bytes) -> float:
    timeout = parse_float(value, "ERR timeout is not a float or out of range")
    if timeout < 0:
        raise _error("ERR timeout is negative")
    return timeout


def _read(name: str, reply: Any, options: dict[str, Any]) -> Any:
    if type(reply) is Status:
        reply = bytes(reply)
    callback = _CALLBACKS.get(name) or _CALLBACKS.get(name.upper())
    if callback is None:
        return reply
    options.pop("keys", None)
    options.pop(NEVER_DECODE, None)
    options.pop(EMPTY_RESPONSE, None)
    return callback(reply, **options)


def _script_reply(reply: Any) -> Any:
    """A script's reply, an error inside its array as redis-py's exception object."""
    if type(reply) is list:
        return [_script_reply(item) for item in reply]
    if type(reply) is CommandError:
        return _error(reply.message)
    return reply
