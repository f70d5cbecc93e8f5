"""JSON log lines: one object per line, extras at the top level, no secrets."""

from __future__ import annotations

import io
import json
import logging

from gateway.telemetry.logs import JsonFormatter, configure_logging


def _format(message: str, *args: object, **extra: object) -> dict:
    record = logging.LogRecord("gateway.test", logging.INFO, __file__, 1, message, args, None)
    for name, value in extra.items():
        setattr(record, name, value)
    return json.loads(JsonFormatter().format(record))


def test_a_record_is_one_json_object_with_its_extras() -> None:
    entry = _format("hello %s", "world", request_id="r1", prompt_tokens=5, total_ms=1.5)
    assert entry["message"] == "hello world"
    assert entry["level"] == "info"
    assert entry["logger"] == "gateway.test"
    assert entry["request_id"] == "r1"
    assert entry["prompt_tokens"] == 5
    assert entry["ts"].endswith("+00:00")


def test_secrets_do_not_reach_the_log() -> None:
    entry = _format(
        "auth failed for Bearer sk-lg-abcdefghijklmnop and sk-lg-0123456789abcdef",
        authorization="Bearer sk-lg-secret",
        api_key="sk-lg-secret",
        key="team-a",
    )
    text = json.dumps(entry)
    assert "sk-lg-" not in text
    assert "authorization" not in entry and "api_key" not in entry
    assert entry["key"] == "team-a"  # the key's name is not a secret


def test_configure_logging_sends_every_logger_through_the_formatter() -> None:
    stream = io.StringIO()
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    try:
        configure_logging("info", stream)
        logging.getLogger("uvicorn.error").info("started")
        logging.getLogger("gateway.x").debug("not shown")
        try:
            raise ValueError("boom")
        except ValueError:
            logging.getLogger("gateway.x").exception("failed")
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [line["message"] for line in lines] == ["started", "failed"]
    assert lines[0]["logger"] == "uvicorn.error"
    assert "ValueError: boom" in lines[1]["exception"]
