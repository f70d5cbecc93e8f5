"""The console's plots: tokens per second and queue depth over the last 15 minutes, sampled
in the process once a second (a small background loop, run by the app's lifespan).

Throughput is the growth of the backends' own counters (``llamacpp:tokens_predicted_total``
and ``prompt_tokens_total`` as the probe last read them) over a short window, so it is the
tokens the pool really produced, whichever gateway replica sent the requests; the window
smooths the steps of probes slower than the sampling.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from litestar import Litestar

from gateway.admission.leases import Admission
from gateway.pool.pool import Pool

#: Seconds between samples, samples kept (15 minutes), samples a rate is taken over.
INTERVAL, KEEP, WINDOW = 1.0, 900, 5


@dataclass(slots=True)
class _Totals:
    """Tokens produced so far, summed over backends; a backend that left or restarted
    counts from where it was, so the sum never goes back."""

    generated: float = 0.0
    prompt: float = 0.0
    last: dict[str, tuple[float, float]] = field(default_factory=dict)

    def add(self, name: str, generated: float, prompt: float) -> None:
        before_generated, before_prompt = self.last.get(name, (generated, prompt))
        if generated < before_generated or prompt < before_prompt:  # restarted: from zero
            before_generated = before_prompt = 0.0
        self.generated += generated - before_generated
        self.prompt += prompt - before_prompt
        self.last[name] = (generated, prompt)


class Sampler:
    def __init__(
        self,
        pool: Pool,
        admission: Admission,
        *,
        declared: Iterable[str] = (),
        clock: Callable[[], float] = time.time,
        interval: float = INTERVAL,
    ) -> None:
        self.pool = pool
        self.admission = admission
        #: Models the gateway runs itself: their queue counts while no runner is loaded.
        self.declared = frozenset(declared)
        self.clock = clock
        self.interval = interval
        self._totals = _Totals()
        self._cumulative: deque[tuple[float, float, float]] = deque(maxlen=WINDOW + 1)
        #: (unix time, generated tokens/s, prompt tokens/s, {model: queue depth}).
        self.points: deque[tuple[float, float, float, dict[str, int]]] = deque(maxlen=KEEP)
        #: Set when the server begins to shut down: the pages' streams end (their browsers
        #: reconnect elsewhere) instead of holding the shutdown for its grace period.
        self.closing = asyncio.Event()

    def close(self) -> None:
        self.closing.set()

    def sample(self) -> None:
        now = self.clock()
        for backend in self.pool.backends:
            counters = backend.stats.counters
            if counters is not None:
                self._totals.add(backend.name, counters.predicted_tokens, counters.prompt_tokens)
        self._cumulative.append((now, self._totals.generated, self._totals.prompt))
        first = self._cumulative[0]
        elapsed = now - first[0]
        generated = (self._totals.generated - first[1]) / elapsed if elapsed > 0 else 0.0
        prompt = (self._totals.prompt - first[2]) / elapsed if elapsed > 0 else 0.0
        models = {b.model_id for b in self.pool.backends if b.model_id}
        models |= self.declared
        queues = {model: self.admission.queue_depth(model) for model in sorted(models)}
        self.points.append((now, round(generated, 1), round(prompt, 1), queues))

    def series(self, since: float = 0.0) -> dict[str, Any]:
        """The points after ``since`` as columns (what uPlot draws)."""
        points = [p for p in self.points if p[0] > since]
        models = sorted({m for p in points for m in p[3]})
        return {
            "t": [round(p[0], 3) for p in points],
            "generated": [p[1] for p in points],
            "prompt": [p[2] for p in points],
            "queue": {m: [p[3].get(m, 0) for p in points] for m in models},
        }

    async def run(self) -> None:
        while True:
            self.sample()
            await asyncio.sleep(self.interval)

    @contextlib.asynccontextmanager
    async def lifespan(self, app: Litestar) -> AsyncIterator[None]:
        task = asyncio.create_task(self.run(), name="console-sampler")
        try:
            yield
        finally:
            self.close()
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
