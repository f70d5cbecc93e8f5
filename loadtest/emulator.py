"""An emulator of llama-server's HTTP API, fast enough not to be the bottleneck.

It stands in for llama-server where the real one would be the bottleneck: measuring the
gateway's own overhead at thousands of requests per second, or an overload whose capacity must
be known exactly. (The overhead scenario also runs against the real llama-server.) It speaks
the parts of the API the gateway and the harness use — ``/health``, ``/props``
(``total_slots``, ``default_generation_settings.n_ctx``), ``/v1/models``, ``/slots``, a
minimal ``/metrics``, ``/tokenize``, ``/v1/chat/completions`` and ``/v1/completions``
streamed or not (``usage``, the ``include_usage`` chunk, ``timings``, ``data: [DONE]``) and
``/v1/embeddings`` — in the same shapes as llama-server (see
``shared/reference/llama-server.md``).

Generation is simulated: ``tokens`` tokens per answer (fewer if ``max_tokens`` asks),
``token_delay`` seconds apart, at most ``slots`` requests at once (the rest wait, unbounded,
as in llama-server). Each streamed token is its own SSE event and its own write, as
llama-server sends them. Raw asyncio with ``httptools`` and ``uvloop``: no framework in the
way.

    python -m loadtest.emulator --port 8090 --slots 4 --tokens 16 --token-delay 0.005
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid

import httptools
import msgspec

_ENCODE = msgspec.json.encode
_DECODE = msgspec.json.decode
_REASONS = {200: b"OK", 400: b"Bad Request", 404: b"Not Found", 503: b"Service Unavailable"}


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    alias: str = "emulated"
    slots: int = 4
    n_ctx: int = 4096
    #: Tokens in an answer when the request does not ask for fewer.
    tokens: int = 16
    #: Seconds between two generated tokens (0: as fast as the loop goes).
    token_delay: float = 0.0
    #: Seconds before the first token (prompt processing).
    prefill_delay: float = 0.0


class Server:
    """The emulated server's state: its slots and counters."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.free = asyncio.Semaphore(settings.slots)
        self.busy = 0
        self.deferred = 0
        self.prompt_tokens = 0
        self.predicted_tokens = 0
        self.requests = 0
        self._static = self._static_documents()

    def _static_documents(self) -> dict[bytes, bytes]:
        s = self.settings
        props = {
            "total_slots": s.slots,
            "default_generation_settings": {"n_ctx": s.n_ctx},
            "model_alias": s.alias,
            "modalities": {"vision": False, "audio": False},
            "endpoint_slots": True,
            "endpoint_metrics": True,
            "is_sleeping": False,
            "build_info": "loadtest-emulator",
        }
        models = {
            "object": "list",
            "data": [
                {
                    "id": s.alias,
                    "object": "model",
                    "owned_by": "llamacpp",
                    "meta": {"n_ctx": s.n_ctx, "n_ctx_train": s.n_ctx, "n_params": 0},
                }
            ],
        }
        return {
            b"/health": b'{"status":"ok"}',
            b"/props": _ENCODE(props),
            b"/v1/models": _ENCODE(models),
            b"/models": _ENCODE(models),
        }

    def slots_document(self) -> bytes:
        return _ENCODE(
            [
                {"id": i, "n_ctx": self.settings.n_ctx, "is_processing": i < self.busy}
                for i in range(self.settings.slots)
            ]
        )

    def metrics_document(self) -> bytes:
        lines = [
            f"llamacpp:prompt_tokens_total {self.prompt_tokens}",
            f"llamacpp:tokens_predicted_total {self.predicted_tokens}",
            f"llamacpp:requests_processing {self.busy}",
            f"llamacpp:requests_deferred {self.deferred}",
        ]
        return ("\n".join(lines) + "\n").encode()


def _response(status: int, body: bytes, content_type: bytes = b"application/json") -> bytes:
    return b"".join(
        (
            b"HTTP/1.1 %d %s\r\n" % (status, _REASONS.get(status, b"Error")),
            b"Content-Type: ",
            content_type,
            b"\r\nContent-Length: %d\r\n\r\n" % len(body),
            body,
        )
    )


_STREAM_HEAD = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
    b"Transfer-Encoding: chunked\r\n\r\n"
)


def _chunk(event: bytes) -> bytes:
    """One SSE event as one HTTP/1.1 chunk."""
    data = b"data: " + event + b"\n\n"
    return b"%x\r\n%s\r\n" % (len(data), data)


def _error(status: int, message: str, kind: str) -> bytes:
    return _response(status, _ENCODE({"error": {"code": status, "message": message, "type": kind}}))


class Generation:
    """One generation request: its shape and the documents it answers with."""

    __slots__ = ("chat", "created", "id", "include_usage", "n", "prompt", "stream")

    def __init__(self, path: bytes, body: dict, settings: Settings) -> None:
        self.chat = path.endswith(b"chat/completions")
        self.stream = bool(body.get("stream"))
        options = body.get("stream_options") or {}
        self.include_usage = bool(options.get("include_usage"))
        limit = body.get("max_tokens") or body.get("max_completion_tokens") or body.get("n_predict")
        self.n = settings.tokens if not limit or limit < 0 else min(int(limit), settings.tokens)
        if self.chat:
            text = "".join(str(m.get("content", "")) for m in body.get("messages") or ())
        else:
            text = str(body.get("prompt", ""))
        self.prompt = max(1, len(text) // 4)
        self.created = int(time.time())
        self.id = ("chatcmpl-" if self.chat else "cmpl-") + uuid.uuid4().hex[:24]

    def usage(self) -> dict:
        return {
            "completion_tokens": self.n,
            "prompt_tokens": self.prompt,
            "total_tokens": self.n + self.prompt,
            "prompt_tokens_details": {"cached_tokens": 0},
        }

    def timings(self, started: float) -> dict:
        ms = (time.perf_counter() - started) * 1000
        return {
            "cache_n": 0,
            "prompt_n": self.prompt,
            "prompt_ms": 0.0,
            "predicted_n": self.n,
            "predicted_ms": ms,
        }

    def whole(self, started: float, model: str) -> bytes:
        content = " tok" * self.n
        if self.chat:
            choice = {
                "finish_reason": "length",
                "index": 0,
                "message": {"role": "assistant", "content": content},
            }
            kind = "chat.completion"
        else:
            choice = {"finish_reason": "length", "index": 0, "text": content}
            kind = "text_completion"
        return _ENCODE(
            {
                "choices": [choice],
                "created": self.created,
                "model": model,
                "object": kind,
                "usage": self.usage(),
                "id": self.id,
                "timings": self.timings(started),
            }
        )

    def event(self, model: str, delta: dict | None = None, finish: str | None = None) -> bytes:
        if self.chat:
            choice = {"finish_reason": finish, "index": 0, "delta": delta or {}}
            kind = "chat.completion.chunk"
        else:
            choice = {"finish_reason": finish, "index": 0, "text": (delta or {}).get("content", "")}
            kind = "text_completion"
        return _ENCODE(
            {
                "choices": [choice],
                "created": self.created,
                "id": self.id,
                "model": model,
                "object": kind,
            }
        )

    def token_event(self, model: str) -> bytes:
        return self.event(model, {"content": " tok"})


class Connection(asyncio.Protocol):
    """One client connection; requests on it are answered in order."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.url = b""
        self.body: list[bytes] = []
        self.previous: asyncio.Task | None = None
        self.closed = False
        self._writable = asyncio.Event()
        self._writable.set()

    # -- asyncio.Protocol -----------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._writable.set()

    def pause_writing(self) -> None:
        self._writable.clear()

    def resume_writing(self) -> None:
        self._writable.set()

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self.transport.write(_error(400, "bad request", "invalid_request_error"))
            self.transport.close()

    # -- httptools callbacks --------------------------------------------------------------
    def on_message_begin(self) -> None:
        self.url = b""
        self.body = []

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        method = self.parser.get_method()
        path = self.url.split(b"?", 1)[0]
        body = b"".join(self.body)
        keep_alive = self.parser.should_keep_alive()
        if self.previous is None or self.previous.done():
            answer = self._quick(method, path, body)
            if answer is not None:  # documents and instant answers: no task needed
                self.transport.write(answer)
                if not keep_alive:
                    self.transport.close()
                return
        self.previous = asyncio.ensure_future(
            self._answer(self.previous, method, path, body, keep_alive)
        )

    # -- answers --------------------------------------------------------------------------
    def _quick(self, method: bytes, path: bytes, body: bytes) -> bytes | None:
        server = self.server
        if method == b"GET":
            if path in server._static:
                return _response(200, server._static[path])
            if path == b"/slots":
                return _response(200, server.slots_document())
            if path == b"/metrics":
                return _response(200, server.metrics_document(), b"text/plain; version=0.0.4")
            return _error(404, "File Not Found", "not_found_error")
        if path == b"/tokenize":
            content = str(_DECODE(body or b"{}").get("content", ""))
            return _response(200, _ENCODE({"tokens": list(range(max(1, len(content) // 4)))}))
        if path in (b"/v1/embeddings", b"/embeddings"):
            return self._embeddings(body)
        if path not in (
            b"/v1/chat/completions",
            b"/chat/completions",
            b"/v1/completions",
            b"/completions",
        ):
            return _error(404, "File Not Found", "not_found_error")
        s = server.settings
        if s.token_delay or s.prefill_delay or server.free.locked():
            return None
        try:
            generation = Generation(path, _DECODE(body), s)
        except (msgspec.DecodeError, AttributeError, TypeError, ValueError):
            return _error(400, "invalid JSON body", "invalid_request_error")
        if generation.stream:
            return None
        server.requests += 1
        server.prompt_tokens += generation.prompt
        server.predicted_tokens += generation.n
        return _response(200, generation.whole(time.perf_counter(), s.alias))

    def _embeddings(self, body: bytes) -> bytes:
        request = _DECODE(body or b"{}")
        inputs = request.get("input", "")
        inputs = inputs if isinstance(inputs, list) else [inputs]
        data = [
            {"object": "embedding", "index": i, "embedding": [0.0] * 8} for i in range(len(inputs))
        ]
        tokens = sum(max(1, len(str(x)) // 4) for x in inputs)
        return _response(
            200,
            _ENCODE(
                {
                    "object": "list",
                    "data": data,
                    "model": self.server.settings.alias,
                    "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
                }
            ),
        )

    async def _answer(self, previous, method, path, body, keep_alive) -> None:
        if previous is not None:
            await asyncio.wait([previous])
        if self.closed:
            return
        answer = self._quick(method, path, body)
        if answer is not None:
            self.transport.write(answer)
        else:
            try:
                generation = Generation(path, _DECODE(body), self.server.settings)
            except (msgspec.DecodeError, AttributeError, TypeError, ValueError):
                self.transport.write(_error(400, "invalid JSON body", "invalid_request_error"))
            else:
                await self._generate(generation)
        if not keep_alive and not self.closed:
            self.transport.close()

    async def _generate(self, g: Generation) -> None:
        server = self.server
        s = server.settings
        server.deferred += 1
        async with server.free:
            server.deferred -= 1
            server.busy += 1
            server.requests += 1
            server.prompt_tokens += g.prompt
            try:
                await self._run(g, s)
            finally:
                server.busy -= 1

    async def _run(self, g: Generation, s: Settings) -> None:
        started = time.perf_counter()
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        if s.prefill_delay:
            await asyncio.sleep(s.prefill_delay)
        if not g.stream:
            if s.token_delay:
                await asyncio.sleep(s.token_delay * g.n)
            self.server.predicted_tokens += g.n
            if not self.closed:
                self.transport.write(_response(200, g.whole(started, s.alias)))
            return
        write = self.transport.write
        write(_STREAM_HEAD)
        if g.chat:
            write(_chunk(g.event(s.alias, {"role": "assistant", "content": None})))
        token = _chunk(g.token_event(s.alias))
        for i in range(g.n):
            if self.closed:
                return  # the client went away: free the slot, as llama-server does
            if s.token_delay:
                delay = t0 + s.prefill_delay + (i + 1) * s.token_delay - loop.time()
                await asyncio.sleep(max(0.0, delay))
            else:
                await asyncio.sleep(0)
            if not self._writable.is_set():
                await self._writable.wait()
            if self.closed:
                return
            write(token)
            self.server.predicted_tokens += 1
        last = msgspec.json.decode(g.event(s.alias, finish="length"))
        if not g.include_usage:
            last["timings"] = g.timings(started)
        write(_chunk(_ENCODE(last)))
        if g.include_usage:
            usage = {
                "choices": [],
                "created": g.created,
                "id": g.id,
                "model": s.alias,
                "object": last["object"],
                "usage": g.usage(),
                "timings": g.timings(started),
            }
            write(_chunk(_ENCODE(usage)))
        write(_chunk(b"[DONE]"))
        write(b"0\r\n\r\n")


async def serve(settings: Settings, host: str, port: int) -> None:
    server = Server(settings)
    loop = asyncio.get_running_loop()
    listener = await loop.create_server(lambda: Connection(server), host, port, backlog=4096)
    async with listener:
        await listener.serve_forever()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m loadtest.emulator",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--alias", default="emulated")
    parser.add_argument("--slots", type=int, default=4)
    parser.add_argument("--n-ctx", type=int, default=4096)
    parser.add_argument("--tokens", type=int, default=16)
    parser.add_argument("--token-delay", type=float, default=0.0)
    parser.add_argument("--prefill-delay", type=float, default=0.0)
    args = parser.parse_args(argv)
    settings = Settings(
        alias=args.alias,
        slots=args.slots,
        n_ctx=args.n_ctx,
        tokens=args.tokens,
        token_delay=args.token_delay,
        prefill_delay=args.prefill_delay,
    )
    try:
        import uvloop

        uvloop.run(serve(settings, args.host, args.port))
    except ImportError:
        asyncio.run(serve(settings, args.host, args.port))


if __name__ == "__main__":
    main()
