"""The prefix fingerprint: a conversation's turns extend one chain; an edit breaks it."""

from __future__ import annotations

from gateway.routing.fingerprint import (
    BLOCK_CHARS,
    MAX_ENTRIES,
    answered_chain,
    chat_chain,
    request_chain,
    text_chain,
)

SYSTEM = {"role": "system", "content": "You are a careful assistant. Answer in full sentences."}
TURN_1 = [SYSTEM, {"role": "user", "content": "What is a hash chain? Explain it briefly."}]
ANSWER_1 = {"role": "assistant", "content": "A hash chain links each entry to the previous one."}
TURN_2 = [*TURN_1, ANSWER_1, {"role": "user", "content": "Where is it used?"}]


def test_same_conversation_same_chain() -> None:
    first = chat_chain({"messages": TURN_1})
    again = chat_chain({"messages": [dict(m) for m in TURN_1], "temperature": 0.3})
    assert first == again
    assert len(first) == 2
    assert first.depths[0] < first.depths[1] == first.depth


def test_next_turn_extends_the_chain_by_the_answer_and_the_question() -> None:
    turn_1 = chat_chain({"messages": TURN_1})
    turn_2 = chat_chain({"messages": TURN_2})
    assert turn_2.entries[:2] == turn_1.entries
    assert len(turn_2) == 4
    # What is recorded after turn 1 (its messages and its answer) is a prefix of turn 2.
    recorded = answered_chain(
        "/v1/chat/completions",
        {"messages": TURN_1},
        {"choices": [{"index": 0, "message": ANSWER_1, "finish_reason": "stop"}]},
    )
    assert recorded is not None
    assert recorded.entries == turn_2.entries[:3]


def test_an_edited_history_breaks_the_chain_at_the_edit() -> None:
    edited = [*TURN_2]
    edited[2] = {"role": "assistant", "content": "Something else entirely."}
    original, changed = chat_chain({"messages": TURN_2}), chat_chain({"messages": edited})
    assert changed.entries[:2] == original.entries[:2]
    assert all(a != b for a, b in zip(changed.entries[2:], original.entries[2:], strict=True))


def test_content_parts_and_strings_are_the_same_message() -> None:
    as_parts = [
        SYSTEM,
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is a hash chain? "},
                {"type": "text", "text": "Explain it briefly."},
            ],
        },
    ]
    assert chat_chain({"messages": as_parts}) == chat_chain({"messages": TURN_1})
    with_image = [*as_parts]
    with_image[1] = {
        "role": "user",
        "content": [*as_parts[1]["content"], {"type": "image_url", "image_url": {"url": "x"}}],
    }
    assert (
        chat_chain({"messages": with_image}).entries[1]
        != chat_chain({"messages": TURN_1}).entries[1]
    )


def test_roles_names_tool_calls_and_tools_count() -> None:
    base = chat_chain({"messages": TURN_1})
    as_user = chat_chain({"messages": [{**SYSTEM, "role": "user"}, TURN_1[1]]})
    assert as_user.entries[0] != base.entries[0]
    call = {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
        ],
    }
    other = {**call, "tool_calls": [{**call["tool_calls"][0], "function": {"name": "g"}}]}
    one = chat_chain({"messages": [*TURN_1, call]})
    two = chat_chain({"messages": [*TURN_1, other]})
    assert one.entries[:2] == two.entries[:2] and one.entries[2] != two.entries[2]
    # The call id is the client's bookkeeping, not prompt text a template renders.
    renamed = {**call, "tool_calls": [{**call["tool_calls"][0], "id": "c2"}]}
    assert chat_chain({"messages": [*TURN_1, renamed]}) == one
    tools = [{"type": "function", "function": {"name": "f", "parameters": {}}}]
    assert chat_chain({"messages": TURN_1, "tools": tools}).entries[0] != base.entries[0]


def test_raw_prompt_blocks() -> None:
    text = "".join(f"Line {i} of a long shared document.\n" for i in range(100))
    chain = text_chain(text)
    assert len(chain) == -(-len(text) // BLOCK_CHARS)
    assert chain.depth == len(text)
    # A longer prompt with the same start shares every full block of the shorter one.
    longer = text_chain(text + "Now summarize it.")
    full_blocks = len(text) // BLOCK_CHARS
    assert longer.entries[:full_blocks] == chain.entries[:full_blocks]
    # An edit in block 3 keeps blocks 0-2 only.
    edited = text_chain(text[: 3 * BLOCK_CHARS + 5] + "X" + text[3 * BLOCK_CHARS + 6 :])
    assert edited.entries[:3] == chain.entries[:3] and edited.entries[3] != chain.entries[3]
    # Prompt and its answer are the same text as the prompt continued by it.
    assert text_chain(text, "an answer") == text_chain(text + "an answer")
    assert request_chain("/v1/completions", {"prompt": [text]}) == chain
    tokens = text_chain(list(range(1000)))
    assert tokens.depth == 1000 and tokens.entries[0] != chain.entries[0]


def test_chains_are_bounded() -> None:
    messages = [{"role": "user", "content": f"message {i}"} for i in range(500)]
    assert len(chat_chain({"messages": messages})) == MAX_ENTRIES
    assert len(text_chain("x" * (BLOCK_CHARS * 1000))) == MAX_ENTRIES
    assert len(request_chain("/v1/embeddings", {"input": "x"})) == 0
