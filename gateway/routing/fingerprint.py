"""A prefix fingerprint of a request that needs no tokenizer.

A chat request becomes a hash chain over its messages in order: entry *i* is the hash of entry
*i-1* and a canonical encoding of message *i*. Two requests share exactly the entries of the
messages they share from the start, so turn *n+1* of a conversation (turn *n*'s messages, the
assistant's answer, the new user message) extends turn *n*'s chain by two entries, and a
history edited at message *k* shares only the first *k* entries. A raw prompt becomes a chain
over fixed-size blocks of its text, the last, shorter block included.

Each entry carries its *depth*: how many canonical bytes (chat) or characters (text) of the
request it covers, so matches of different backends compare by how much prompt they cover.
Chains keep at most :data:`MAX_ENTRIES` entries: their head identifies a conversation well
enough, and the store stays bounded per request.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import msgspec

#: Entries kept per chain (messages of a chat, blocks of a raw prompt).
MAX_ENTRIES = 64
#: Characters per block of a raw prompt.
BLOCK_CHARS = 512
_DIGEST = 8
_encode = msgspec.json.Encoder(order="sorted").encode


@dataclass(frozen=True, slots=True)
class Chain:
    """A request's prefix fingerprint: entry ids (hex) and the depth each one covers."""

    entries: tuple[str, ...] = ()
    depths: tuple[int, ...] = ()

    def __len__(self) -> int:
        return len(self.entries)

    @property
    def depth(self) -> int:
        """What the whole chain covers (0 for an empty chain)."""
        return self.depths[-1] if self.depths else 0


def chat_chain(body: Mapping[str, Any], answer: Mapping[str, Any] | None = None) -> Chain:
    """The chain of a chat request's ``messages`` (and of ``answer``, the assistant message
    that answered it, when recording what a backend now holds)."""
    messages: Iterable[Any] = body.get("messages") or ()
    if answer is not None:
        messages = [*messages, answer]
    seed = b"chat\x00" + _encode(body.get("tools") or None)
    return _chain(seed, (_message(m) for m in messages if isinstance(m, Mapping)))


def text_chain(prompt: Any, answer: str = "") -> Chain:
    """The chain of a raw ``prompt`` (a string, or tokens) followed by ``answer`` text."""
    if isinstance(prompt, list) and prompt and not isinstance(prompt[0], int):
        prompt = prompt[0]  # a batch: its first prompt
    if isinstance(prompt, str):
        text = prompt + answer
        pieces = (text[i : i + BLOCK_CHARS].encode() for i in range(0, len(text), BLOCK_CHARS))
        return _chain(b"text\x00", pieces, sizes=_char_sizes(text))
    if isinstance(prompt, list):  # token ids: blocks of 128 tokens, depth in tokens
        step = BLOCK_CHARS // 4
        blocks = (_encode(prompt[i : i + step]) for i in range(0, len(prompt), step))
        sizes = [min(step, len(prompt) - i) for i in range(0, len(prompt), step)]
        return _chain(b"tokens\x00", blocks, sizes=sizes)
    return Chain()


def request_chain(endpoint: str, body: Mapping[str, Any]) -> Chain:
    """The chain of a request as it arrives: a conversation (chat, Anthropic Messages,
    Responses) or a raw prompt (completions, llama.cpp's ``/completion``), by endpoint."""
    if endpoint.endswith("/chat/completions"):
        return chat_chain(body)
    if endpoint == "/v1/messages":
        return chat_chain({**body, "messages": _with_system(body.get("system"), body)})
    if endpoint == "/v1/responses":
        return chat_chain({**body, "messages": _responses_messages(body)})
    if endpoint.endswith("/completions") or endpoint == "/completion":
        return text_chain(body.get("prompt"))
    return Chain()


def _with_system(system: Any, body: Mapping[str, Any]) -> list[Any]:
    messages = list(body.get("messages") or ())
    return [{"role": "system", "content": system}, *messages] if system else messages


def _responses_messages(body: Mapping[str, Any]) -> list[Any]:
    """A Responses request's ``input`` (a string, or items) as the conversation it is."""
    given = body.get("input")
    items = [{"role": "user", "content": given}] if isinstance(given, str) else list(given or ())
    return _with_system(body.get("instructions"), {"messages": items})


def answered_chain(endpoint: str, body: Mapping[str, Any], response: Any) -> Chain | None:
    """The chain of the request followed by its answer, read from a non-streamed response
    body; ``None`` when the response carries no single answer to add."""
    choices = response.get("choices") if isinstance(response, Mapping) else None
    if not choices or len(choices) != 1 or not isinstance(choices[0], Mapping):
        return None
    choice = choices[0]
    if endpoint.endswith("/chat/completions"):
        message = choice.get("message")
        return chat_chain(body, message) if isinstance(message, Mapping) else None
    if endpoint.endswith("/completions") and isinstance(choice.get("text"), str):
        return text_chain(body.get("prompt"), choice["text"])
    return None


# -- the canonical form ---------------------------------------------------------------------


def _message(message: Mapping[str, Any]) -> bytes:
    """What of a message reaches the prompt, in one form however the client spelled it:
    content as a string or as parts, tool calls as name and arguments. Reasoning text is left
    out: chat templates drop it from the history."""
    calls = [
        (
            c.get("type"),
            (c.get("function") or {}).get("name"),
            (c.get("function") or {}).get("arguments"),
        )
        for c in message.get("tool_calls") or ()
        if isinstance(c, Mapping)
    ]
    return _encode(
        [
            message.get("role"),
            message.get("name"),
            _content(message.get("content")),
            calls,
            message.get("tool_call_id"),
        ]
    )


def _content(content: Any) -> Any:
    """A string stays; a list of parts becomes its texts joined, with media by digest, so
    ``"hi"`` and ``[{"type": "text", "text": "hi"}]`` are the same message."""
    if not isinstance(content, list):
        return content or None
    pieces: list[str] = []
    for part in content:
        if not isinstance(part, Mapping):
            pieces.append(str(part))
        elif part.get("type") == "text" or "text" in part:
            pieces.append(str(part.get("text", "")))
        else:
            media = hashlib.blake2b(_encode(part), digest_size=_DIGEST).hexdigest()
            pieces.append(f"\x00{part.get('type')}:{media}\x00")
    return "".join(pieces) or None


def _char_sizes(text: str) -> list[int]:
    return [min(BLOCK_CHARS, len(text) - i) for i in range(0, len(text), BLOCK_CHARS)]


def _chain(seed: bytes, pieces: Iterable[bytes], sizes: Sequence[int] | None = None) -> Chain:
    entries: list[str] = []
    depths: list[int] = []
    state = hashlib.blake2b(seed, digest_size=_DIGEST).digest()
    depth = 0
    for i, piece in enumerate(pieces):
        if i >= MAX_ENTRIES:
            break
        state = hashlib.blake2b(state + piece, digest_size=_DIGEST).digest()
        depth += sizes[i] if sizes is not None else len(piece)
        entries.append(state.hex())
        depths.append(depth)
    return Chain(tuple(entries), tuple(depths))
