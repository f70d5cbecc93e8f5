"""``gateway/upstream/sse.py``: relaying a backend's server-sent events byte for byte, while
reading usage, finish reasons and errors out of the few events that carry them."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from itertools import pairwise

import msgspec

from gateway.errors import GatewayError, UpstreamUnreachable
from gateway.upstream.sse import StreamOutcome, relay
from gateway.usage import Usage

USAGE = {"prompt_tokens": 9, "completion_tokens": 2, "total_tokens": 11}


def _event(data: dict | str) -> bytes:
    payload = data if isinstance(data, str) else msgspec.json.encode(data).decode()
    return f"data: {payload}\n\n".encode()


def _delta(text: str) -> bytes:
    return _event(
        {
            "id": "c1",
            "object": "chat.completion.chunk",
            "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": None}],
        }
    )


FINISH = _event(
    {"id": "c1", "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}], "timings": {}}
)
USAGE_ONLY = _event({"id": "c1", "choices": [], "usage": USAGE})
DONE = b"data: [DONE]\n\n"
# A quote and the word "usage" inside generated text are escaped JSON, not keys.
TRICKY = _delta('say "usage" and "error"\n\nplease')

STREAM = _delta("Hel") + _delta("lo") + TRICKY + FINISH + USAGE_ONLY + DONE


class FakeUpstream:
    """Stands in for :class:`gateway.upstream.client.UpstreamResponse` (which wraps an aiohttp
    response): ``chunks()`` yields the given pieces, then optionally raises. Only ``chunks`` is
    used by ``relay``; the real aiohttp path is covered by the integration tests."""

    def __init__(self, pieces: Sequence[bytes], *, fail_with: Exception | None = None) -> None:
        self.pieces = list(pieces)
        self.fail_with = fail_with

    async def chunks(self) -> AsyncIterator[bytes]:
        for piece in self.pieces:
            yield piece
        if self.fail_with is not None:
            raise self.fail_with


def _split(data: bytes, *cuts: int) -> list[bytes]:
    bounds = [0, *cuts, len(data)]
    return [data[a:b] for a, b in pairwise(bounds)]


def _awkward(data: bytes) -> list[bytes]:
    """Pieces cut mid-event, between the two newlines of a boundary, and several events long."""
    boundary = data.index(b"\n\n")
    return _split(data, 3, boundary + 1, boundary + 2, boundary + 40, len(data) - 5)


async def _run(
    pieces: Sequence[bytes], *, drop_usage: bool, fail_with: Exception | None = None
) -> tuple[list[bytes], StreamOutcome]:
    outcome = StreamOutcome()
    upstream = FakeUpstream(pieces, fail_with=fail_with)
    pieces_out = relay(upstream, outcome, drop_usage=drop_usage, clock=lambda: 42.5)
    out = [piece async for piece in pieces_out]
    return out, outcome


def _error_event(piece: bytes) -> dict:
    assert piece.startswith(b"data: ")
    assert piece.endswith(b"\n\n")
    body = msgspec.json.decode(piece[6:])
    assert list(body) == ["error"]
    assert set(body["error"]) == {"message", "type", "param", "code"}
    return body["error"]


async def test_bytes_pass_through_unchanged() -> None:
    out, outcome = await _run(_awkward(STREAM), drop_usage=False)
    assert b"".join(out) == STREAM
    assert outcome.usage == Usage(9, 2)
    assert outcome.finish_reasons == ["stop"]
    assert outcome.done is True
    assert outcome.error is None
    assert outcome.first_byte_at == 42.5


async def test_every_piece_ends_on_an_event_boundary() -> None:
    out, _ = await _run([STREAM[i : i + 7] for i in range(0, len(STREAM), 7)], drop_usage=False)
    assert b"".join(out) == STREAM
    assert all(piece.endswith(b"\n\n") for piece in out)


async def test_one_byte_at_a_time() -> None:
    out, outcome = await _run([STREAM[i : i + 1] for i in range(len(STREAM))], drop_usage=True)
    assert b"".join(out) == STREAM.replace(USAGE_ONLY, b"")
    assert outcome.usage == Usage(9, 2)
    assert outcome.done is True


async def test_whole_stream_in_one_chunk() -> None:
    out, outcome = await _run([STREAM], drop_usage=False)
    assert out == [STREAM]
    assert outcome.done is True


async def test_usage_chunk_dropped_when_asked() -> None:
    out, outcome = await _run(_awkward(STREAM), drop_usage=True)
    assert b"".join(out) == STREAM.replace(USAGE_ONLY, b"")
    assert b'"usage"' not in b"".join(out).replace(TRICKY, b"")
    assert outcome.usage == Usage(9, 2)
    assert outcome.finish_reasons == ["stop"]
    assert outcome.done is True
    assert outcome.error is None


async def test_usage_on_a_chunk_with_choices_is_kept() -> None:
    # Some backends put usage on the last chunk that still has choices: that one stays.
    last = _event(
        {"choices": [{"index": 0, "delta": {}, "finish_reason": "length"}], "usage": USAGE}
    )
    stream = _delta("a") + last + DONE
    out, outcome = await _run(_split(stream, 10, len(stream) - 3), drop_usage=True)
    assert b"".join(out) == stream
    assert outcome.usage == Usage(9, 2)
    assert outcome.finish_reasons == ["length"]


async def test_finish_reasons_of_several_choices() -> None:
    finish = _event(
        {
            "choices": [
                {"index": 0, "delta": {}, "finish_reason": "stop"},
                {"index": 1, "delta": {}, "finish_reason": "length"},
            ]
        }
    )
    _, outcome = await _run([finish + DONE], drop_usage=False)
    assert outcome.finish_reasons == ["stop", "length"]


async def test_completions_stream() -> None:
    text = _event({"choices": [{"index": 0, "text": "hi", "finish_reason": None}]})
    finish = _event({"choices": [{"index": 0, "text": "", "finish_reason": "stop"}]})
    stream = text + finish + USAGE_ONLY + DONE
    out, outcome = await _run(_split(stream, 20, 21, 60), drop_usage=True)
    assert b"".join(out) == text + finish + DONE
    assert outcome.finish_reasons == ["stop"]
    assert outcome.usage == Usage(9, 2)


async def test_stream_without_done_ends_with_an_error_event() -> None:
    cut = _delta("Hel") + _delta("lo")
    out, outcome = await _run(_split(cut, 5, 30), drop_usage=False)
    assert b"".join(out[:-1]) == cut
    error = _error_event(out[-1])
    assert error["type"] == "upstream_error"
    assert error["code"] == "upstream_incomplete"
    assert outcome.done is False
    assert outcome.error == {"message": error["message"], "type": "upstream_error"}


async def test_partial_last_event_is_not_sent() -> None:
    partial = _delta("Hel") + b'data: {"xyzzy'
    out, outcome = await _run([partial], drop_usage=False)
    assert out[0] == _delta("Hel")
    assert b"xyzzy" not in b"".join(out)
    assert _error_event(out[-1])["code"] == "upstream_incomplete"
    assert outcome.error is not None


async def test_empty_stream() -> None:
    out, outcome = await _run([], drop_usage=False)
    assert len(out) == 1
    assert _error_event(out[0])["code"] == "upstream_incomplete"
    assert outcome.first_byte_at is None
    assert outcome.done is False


async def test_backend_error_event_is_recorded() -> None:
    backend_error = {"code": 500, "message": "failed to decode", "type": "server_error"}
    stream = _delta("a") + _event({"error": backend_error})
    out, outcome = await _run(_split(stream, 50), drop_usage=True)
    # The backend's own error event reaches the client; the gateway adds none of its own.
    assert b"".join(out) == stream
    assert outcome.error == backend_error
    assert outcome.done is False


async def test_gateway_error_mid_stream_becomes_an_error_event() -> None:
    sent = _delta("Hel") + _delta("lo")[:10]
    failure = UpstreamUnreachable("backend failed mid-stream: reset")
    out, outcome = await _run([sent], drop_usage=False, fail_with=failure)
    assert out[0] == _delta("Hel")
    error = _error_event(out[-1])
    assert error == {
        "message": failure.message,
        "type": "upstream_error",
        "param": None,
        "code": "upstream_unreachable",
    }
    assert outcome.error == {"message": failure.message, "type": "upstream_error"}
    assert outcome.done is False
    assert len(out) == 2


async def test_gateway_error_before_any_byte() -> None:
    failure = GatewayError("gone", code="x")
    out, outcome = await _run([], drop_usage=False, fail_with=failure)
    assert [_error_event(piece)["message"] for piece in out] == ["gone"]
    assert outcome.first_byte_at is None
    assert outcome.error == {"message": "gone", "type": "server_error"}


async def test_undecodable_marked_event_is_kept() -> None:
    odd = b'data: {"usage": not json}\n\n'
    stream = _delta("a") + odd + DONE
    out, outcome = await _run([stream], drop_usage=True)
    assert b"".join(out) == stream
    assert outcome.usage is None
    assert outcome.done is True


async def test_comments_and_other_fields_pass_through() -> None:
    stream = b": keep-alive\n\n" + b"event: message\ndata: {}\n\n" + USAGE_ONLY + DONE
    out, outcome = await _run(_split(stream, 2, 16), drop_usage=False)
    assert b"".join(out) == stream
    assert outcome.usage == Usage(9, 2)
