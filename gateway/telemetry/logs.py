"""JSON logs, one object per line, for the whole process (the gateway's loggers, uvicorn's and
the libraries'). Configured once, by the CLI, with :func:`configure_logging`.

Fields passed with ``extra=`` become top-level keys. Secrets never leave: keys that name a
credential are dropped and anything shaped like an API key in the message is masked.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime
from typing import IO, Any

__all__ = ["JsonFormatter", "configure_logging"]

#: Attributes every ``LogRecord`` has: not copied as extra fields.
_RECORD_FIELDS = frozenset(
    vars(logging.LogRecord("", 0, "", 0, "", (), None)).keys() | {"message", "asctime"}
)
_SECRET_FIELDS = re.compile(r"authorization|api_?key|secret|password|token$", re.IGNORECASE)
#: Bearer credentials and the gateway's key shape (``sk-…``) anywhere in a message.
_SECRET_TEXT = re.compile(r"(?i)(bearer\s+)\S+|\bsk-[A-Za-z0-9_\-]{8,}")


def _mask(text: str) -> str:
    return _SECRET_TEXT.sub(lambda m: (m.group(1) or "") + "[redacted]", text)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": _mask(record.getMessage()),
        }
        for name, value in vars(record).items():
            if name in _RECORD_FIELDS or name.startswith("_") or name in entry:
                continue
            if _SECRET_FIELDS.search(name):
                continue
            entry[name] = value
        if record.exc_info:
            entry["exception"] = _mask(self.formatException(record.exc_info))
        if record.stack_info:
            entry["stack"] = record.stack_info
        return json.dumps(entry, default=str, ensure_ascii=False)


def configure_logging(level: str = "info", stream: IO[str] | None = None) -> None:
    """Send every logger's records, as JSON lines, to ``stream`` (stderr by default)."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    # uvicorn's loggers keep no handlers of their own and reach the root (log_config=None).
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers.clear()
        logging.getLogger(name).propagate = True
