"""``--log-format``: readable lines on a terminal, JSON otherwise, and neither carries
uvicorn's ANSI-coloured copy of the message (``color_message``)."""

from __future__ import annotations

import io
import json
import logging

import pytest

from gateway.telemetry.logs import JsonFormatter, TextFormatter, configure_logging


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def _record(**extra: object) -> logging.LogRecord:
    record = logging.LogRecord(
        "uvicorn.error", logging.INFO, __file__, 1, "Started %s", ("x",), None
    )
    for name, value in extra.items():
        setattr(record, name, value)
    return record


def test_json_drops_color_message() -> None:
    entry = json.loads(JsonFormatter().format(_record(color_message="\x1b[36mStarted\x1b[0m")))
    assert entry["message"] == "Started x"
    assert "color_message" not in entry


def test_text_is_one_readable_line_with_extras_and_no_secrets() -> None:
    line = TextFormatter().format(
        _record(
            color_message="\x1b[36m", model="smollm2", backend=None, api_key="sk-lg-secret123456"
        )
    )
    assert line.endswith("info    Started x model=smollm2")
    assert "\x1b" not in line and "sk-lg" not in line


@pytest.mark.parametrize(
    ("stream", "log_format", "is_json"),
    [
        (_Terminal(), "auto", False),
        (io.StringIO(), "auto", True),
        (_Terminal(), "json", True),
        (io.StringIO(), "text", False),
    ],
)
def test_auto_is_text_on_a_terminal_and_json_elsewhere(
    stream: io.StringIO, log_format: str, is_json: bool
) -> None:
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    try:
        configure_logging("info", stream, log_format=log_format)
        logging.getLogger("gateway.test").info("hello")
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
    line = stream.getvalue().strip()
    if is_json:
        assert json.loads(line)["message"] == "hello"
    else:
        assert line.endswith("info    hello") and not line.startswith("{")
