"""``gateway/upstream/formats.py`` and the relay: each API's answer, whole or streamed, read
into one usage — on streams recorded from the real llama-server (SmolLM2) the project runs.
The relay is fed by a stand-in for the aiohttp response; the real one is covered by
tests/integration/test_apis.py."""

from __future__ import annotations

from collections.abc import AsyncIterator

import msgspec
import pytest

from gateway.errors import UpstreamUnreachable
from gateway.requests import Endpoint
from gateway.upstream.formats import StreamOutcome, format_of
from gateway.upstream.sse import relay
from gateway.usage import Usage

# Recorded from llama-server (skulk build, 2026-12) with curl -N.
RESPONSES_STREAM = (
    b'event: response.created\ndata: {"type":"response.created","response":{"id":"r",'
    b'"object":"response","status":"in_progress"}}\n\n'
    b'event: response.output_text.delta\ndata: {"type":"response.output_text.delta",'
    b'"item_id":"m","delta":"What"}\n\n'
    b'event: response.output_text.delta\ndata: {"type":"response.output_text.delta",'
    b'"item_id":"m","delta":" an \\"error\\" usage"}\n\n'
    b'event: response.completed\ndata: {"type":"response.completed","response":{"id":"r",'
    b'"status":"completed","usage":{"input_tokens":32,"output_tokens":4,"total_tokens":36,'
    b'"input_tokens_details":{"cached_tokens":31}}},"timings":{"cache_n":31}}\n\n'
)
MESSAGES_STREAM = (
    b'event: message_start\ndata: {"type":"message_start","message":{"id":"c","type":'
    b'"message","role":"assistant","content":[],"model":"smollm2","stop_reason":null,'
    b'"usage":{"cache_read_input_tokens":31,"input_tokens":1,"output_tokens":0}}}\n\n'
    b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,"delta":'
    b'{"type":"text_delta","text":"Sm"}}\n\n'
    b'event: message_delta\ndata: {"type":"message_delta","delta":{"stop_reason":'
    b'"max_tokens","stop_sequence":null},"usage":{"output_tokens":3}}\n\n'
    b'event: message_stop\ndata: {"type":"message_stop"}\n\n'
)
# Recorded through the gateway from llama-server (2026-12-03) under load: its first token was
# an emoji's first bytes, so no text and no message_start (llama-server sends it with the
# first partial that has text: ``n_decoded == 1``).
MESSAGES_STREAM_WITHOUT_START = (
    b'event: content_block_start\ndata: {"type":"content_block_start","index":0,'
    b'"content_block":{"type":"text","text":""}}\n\n'
    b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,"delta":'
    b'{"type":"text_delta","text":"\xf0\x9f\x91\x8c"}}\n\n'
    b'event: content_block_stop\ndata: {"type":"content_block_stop","index":0}\n\n'
    b'event: message_delta\ndata: {"type":"message_delta","delta":{"stop_reason":'
    b'"max_tokens","stop_sequence":null},"usage":{"output_tokens":5}}\n\n'
    b'event: message_stop\ndata: {"type":"message_stop"}\n\n'
)
NATIVE_STREAM = (
    b'data: {"index":0,"content":" the","tokens":[260],"stop":false,"tokens_predicted":1,'
    b'"tokens_evaluated":2}\n\n'
    b'data: {"index":0,"content":"","stop":true,"tokens_predicted":2,"tokens_evaluated":2,'
    b'"stop_type":"limit","timings":{"cache_n":1,"prompt_n":1}}\n\n'
)


class FakeUpstream:
    """Stands in for ``UpstreamResponse`` (an aiohttp response): yields the given pieces,
    then optionally raises."""

    def __init__(self, pieces: list[bytes], fail_with: Exception | None = None) -> None:
        self.pieces, self.fail_with = pieces, fail_with

    async def chunks(self) -> AsyncIterator[bytes]:
        for piece in self.pieces:
            yield piece
        if self.fail_with is not None:
            raise self.fail_with


async def _relay(
    endpoint: Endpoint, stream: bytes, *, cut: int = 7, fail_with: Exception | None = None
) -> tuple[bytes, StreamOutcome]:
    outcome = StreamOutcome()
    pieces = [stream[i : i + cut] for i in range(0, len(stream), cut)]
    out = relay(
        FakeUpstream(pieces, fail_with),  # type: ignore[arg-type]
        outcome,
        drop_usage=True,
        clock=lambda: 1.0,
        answer_format=format_of(endpoint),
    )
    return b"".join([piece async for piece in out]), outcome


@pytest.mark.parametrize(
    ("endpoint", "stream", "usage", "reasons"),
    [
        (Endpoint.RESPONSES, RESPONSES_STREAM, Usage(32, 4, 31), ["completed"]),
        # Anthropic's input_tokens leaves the cached part out: 1 + 31 read from the cache.
        (Endpoint.MESSAGES, MESSAGES_STREAM, Usage(32, 3, 31), ["max_tokens"]),
        (Endpoint.COMPLETION, NATIVE_STREAM, Usage(2, 2, 1), ["limit"]),
    ],
)
async def test_each_stream_passes_through_and_reads_its_usage(
    endpoint: Endpoint, stream: bytes, usage: Usage, reasons: list[str]
) -> None:
    out, outcome = await _relay(endpoint, stream)
    assert out == stream  # nothing dropped or re-encoded: these APIs always carry usage
    assert outcome.done and outcome.error is None
    assert outcome.usage == usage
    assert outcome.finish_reasons == reasons


@pytest.mark.parametrize(
    ("endpoint", "answer", "usage"),
    [
        (
            Endpoint.RESPONSES,
            {"status": "completed", "usage": {"input_tokens": 32, "output_tokens": 8}},
            Usage(32, 8),
        ),
        (
            Endpoint.MESSAGES,
            {
                "stop_reason": "max_tokens",
                "usage": {
                    "cache_read_input_tokens": 31,
                    "cache_creation_input_tokens": 2,
                    "input_tokens": 1,
                    "output_tokens": 6,
                },
            },
            Usage(34, 6, 31),
        ),
        (
            Endpoint.COMPLETION,
            {"tokens_evaluated": 2, "tokens_predicted": 4, "timings": {"cache_n": 0}},
            Usage(2, 4),
        ),
        (Endpoint.RERANK, {"usage": {"prompt_tokens": 14, "total_tokens": 14}}, Usage(14)),
        (Endpoint.TOKENIZE, {"tokens": [1, 2]}, None),
        (Endpoint.EMBEDDING, [{"index": 0, "embedding": [[0.1]]}], None),
    ],
)
def test_whole_answers_usage(endpoint: Endpoint, answer: object, usage: Usage | None) -> None:
    assert format_of(endpoint).usage(answer) == usage


async def test_an_anthropic_stream_that_breaks_ends_with_an_anthropic_error_event() -> None:
    start = MESSAGES_STREAM[: MESSAGES_STREAM.index(b"event: content_block_delta")]
    out, outcome = await _relay(
        Endpoint.MESSAGES, start, fail_with=UpstreamUnreachable("10.0.0.7:8080 reset")
    )
    last = out[len(start) :]
    assert last.startswith(b"event: error\ndata: ")
    body = msgspec.json.decode(last.split(b"data: ", 1)[1])
    assert body["type"] == "error" and body["error"]["type"] == "api_error"
    assert "10.0.0.7" not in body["error"]["message"]
    assert not outcome.done and outcome.error is not None


async def test_a_responses_stream_cut_short_ends_with_a_responses_error_event() -> None:
    cut = RESPONSES_STREAM[: RESPONSES_STREAM.index(b"event: response.completed")]
    out, outcome = await _relay(Endpoint.RESPONSES, cut)
    last = msgspec.json.decode(out[len(cut) :].split(b"data: ", 1)[1])
    assert last["type"] == "error" and last["code"] == "upstream_incomplete"
    assert outcome.usage is None and outcome.events == 3  # what the client did receive


async def test_an_anthropic_stream_without_its_message_start_gets_one() -> None:
    """Anthropic's SDKs build the message from message_start: a stream that lacks it (see
    MESSAGES_STREAM_WITHOUT_START) gets one first, with the model asked for; one that has it
    is relayed as it came."""
    outcome = StreamOutcome()
    out = relay(
        FakeUpstream([MESSAGES_STREAM_WITHOUT_START]),  # type: ignore[arg-type]
        outcome,
        drop_usage=False,
        clock=lambda: 1.0,
        answer_format=format_of(Endpoint.MESSAGES),
        model="smollm2",
    )
    relayed = b"".join([piece async for piece in out])
    first, rest = relayed.split(b"\n\n", 1)
    assert first.startswith(b"event: message_start\ndata: ")
    start = msgspec.json.decode(first.split(b"data: ", 1)[1])
    assert start["type"] == "message_start" and start["message"]["model"] == "smollm2"
    assert start["message"]["id"].startswith("msg_") and start["message"]["role"] == "assistant"
    assert rest == MESSAGES_STREAM_WITHOUT_START
    assert outcome.done and outcome.usage == Usage(0, 5, 0)

    whole, _ = await _relay(Endpoint.MESSAGES, MESSAGES_STREAM)
    assert whole == MESSAGES_STREAM
