"""The last requests this process answered, and those it is answering, for the console.

:class:`RecentRequests` is the ``recorder`` of :class:`~gateway.telemetry.request.RequestTelemetry`:
told when a request opens an exchange with a backend (it is then *in flight* there, under its
key's name) and when its log line is written (it then joins a ring buffer of the last
``size`` requests, with the same fields as the line). In-process on purpose: it answers "what
happened here just now", the job of logs and Prometheus for anything older or wider.
"""

from __future__ import annotations

import itertools
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

__all__ = ["InFlight", "RecentRequests", "Traced"]

#: The fields of a request's log line that the console shows.
FIELDS = (
    "request_id",
    "path",
    "status",
    "key",
    "model",
    "backend",
    "slot",
    "queue_ms",
    "ttft_ms",
    "total_ms",
    "prompt_tokens",
    "completion_tokens",
    "cached_tokens",
)


class Traced(Protocol):
    """What the recorder reads of a request's telemetry while it runs."""

    request_id: str
    model: str | None
    backend: str | None
    slot: int | None

    @property
    def key_name(self) -> str | None: ...


@dataclass(frozen=True, slots=True)
class InFlight:
    """One request holding a slot of a backend, as the pool view shows it."""

    request_id: str
    key: str | None
    model: str | None
    slot: int | None
    seconds: float


class RecentRequests:
    def __init__(self, size: int = 500, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.size = size
        self._clock = clock
        self._records: deque[dict[str, Any]] = deque(maxlen=size)
        self._seq = itertools.count(1)
        #: The newest record's sequence number (0: none yet); a page asks for those after it.
        self.last_seq = 0
        self._open: dict[str, tuple[Traced, float]] = {}

    # -- the recorder hooks ------------------------------------------------------------------

    def opened(self, telemetry: Traced) -> None:
        """The request sent its body to ``telemetry.backend`` (again, after a retry)."""
        self._open[telemetry.request_id] = (telemetry, self._clock())

    def finished(self, telemetry: Traced, fields: Mapping[str, Any]) -> None:
        """The request is over; ``fields`` are those of its log line."""
        self._open.pop(telemetry.request_id, None)
        self.last_seq = next(self._seq)
        record = {name: fields.get(name) for name in FIELDS}
        record["seq"] = self.last_seq
        record["at"] = time.time()
        self._records.append(record)

    # -- what the console reads --------------------------------------------------------------

    def inflight(self, backend: str) -> list[InFlight]:
        """Requests holding a slot of ``backend`` (by its ``host:port`` name), oldest first."""
        now = self._clock()
        found = [
            InFlight(t.request_id, t.key_name, t.model, t.slot, round(now - since, 1))
            for t, since in self._open.values()
            if t.backend == backend
        ]
        return sorted(found, key=lambda r: -r.seconds)

    def since(self, seq: int) -> list[dict[str, Any]]:
        """Records newer than sequence number ``seq``, oldest first."""
        return [record for record in self._records if record["seq"] > seq]

    def query(
        self,
        *,
        status: str | None = None,
        key: str | None = None,
        model: str | None = None,
        limit: int | None = None,
    ) -> list[dict[str, Any]]:
        """The newest records first, filtered. ``status``: a code (``429``) or a class
        (``4xx``, ``error`` for any code of 400 and above, ``ok`` for below)."""
        matching: Iterable[dict[str, Any]] = reversed(self._records)
        if status:
            matching = (r for r in matching if status_matches(r.get("status"), status))
        if key:
            matching = (r for r in matching if r.get("key") == key)
        if model:
            matching = (r for r in matching if r.get("model") == model)
        return list(itertools.islice(matching, limit))


def status_matches(status: int | None, wanted: str) -> bool:
    if status is None:
        return False
    wanted = wanted.strip().lower()
    if wanted == "ok":
        return status < 400
    if wanted == "error":
        return status >= 400
    if len(wanted) == 3 and wanted.endswith("xx") and wanted[0].isdigit():
        return status // 100 == int(wanted[0])
    return wanted.isdigit() and status == int(wanted)
