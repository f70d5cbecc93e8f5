"""The process's logs (the gateway's loggers, uvicorn's and the libraries'), configured once,
by the CLI, with :func:`configure_logging`: JSON, one object per line, for collectors; or
readable lines (``HH:MM:SS level message key=value``) for a person at a terminal. ``auto``
picks the second on a TTY.

Fields passed with ``extra=`` become top-level keys (JSON) or ``key=value`` pairs (text).
Secrets never leave: keys that name a credential are dropped and anything shaped like an API
key in the message is masked. uvicorn's ``color_message`` (the message again, with ANSI
colour codes) is dropped from both.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime
from typing import IO, Any

__all__ = ["JsonFormatter", "TextFormatter", "configure_logging"]

#: Attributes every ``LogRecord`` has, and uvicorn's ANSI copy of the message: not extras.
_RECORD_FIELDS = frozenset(
    vars(logging.LogRecord("", 0, "", 0, "", (), None)).keys()
    | {"message", "asctime", "color_message"}
)
_SECRET_FIELDS = re.compile(r"authorization|api_?key|secret|password|token$", re.IGNORECASE)
#: Bearer credentials and the gateway's key shape (``sk-…``) anywhere in a message.
_SECRET_TEXT = re.compile(r"(?i)(bearer\s+)\S+|\bsk-[A-Za-z0-9_\-]{8,}")


def _mask(text: str) -> str:
    return _SECRET_TEXT.sub(lambda m: (m.group(1) or "") + "[redacted]", text)


def _extras(record: logging.LogRecord, taken: dict[str, Any]) -> dict[str, Any]:
    """The ``extra=`` fields of ``record`` that may be shown."""
    return {
        name: value
        for name, value in vars(record).items()
        if name not in _RECORD_FIELDS
        and not name.startswith("_")
        and name not in taken
        and not _SECRET_FIELDS.search(name)
    }


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": _mask(record.getMessage()),
        }
        entry.update(_extras(record, entry))
        if record.exc_info:
            entry["exception"] = _mask(self.formatException(record.exc_info))
        if record.stack_info:
            entry["stack"] = record.stack_info
        return json.dumps(entry, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """``12:00:01 info  message key=value``: local time, the level, the masked message."""

    def format(self, record: logging.LogRecord) -> str:
        when = datetime.fromtimestamp(record.created).strftime("%H:%M:%S")
        line = f"{when} {record.levelname.lower():<7} {_mask(record.getMessage())}"
        # Unset fields (None) say nothing to a reader: left out here, kept in JSON.
        extras = {k: v for k, v in _extras(record, {}).items() if v is not None}
        if extras:
            line += " " + " ".join(f"{name}={value}" for name, value in extras.items())
        if record.exc_info:
            line += "\n" + _mask(self.formatException(record.exc_info))
        return line


def configure_logging(
    level: str = "info", stream: IO[str] | None = None, log_format: str = "json"
) -> None:
    """Send every logger's records to ``stream`` (stderr by default) as ``log_format``:
    ``json``, ``text``, or ``auto`` (text when ``stream`` is a terminal)."""
    stream = stream or sys.stderr
    if log_format == "auto":
        log_format = "text" if stream.isatty() else "json"
    handler = logging.StreamHandler(stream)
    handler.setFormatter(TextFormatter() if log_format == "text" else JsonFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    # uvicorn's loggers keep no handlers of their own and reach the root (log_config=None).
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers.clear()
        logging.getLogger(name).propagate = True
