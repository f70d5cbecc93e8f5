"""The progress bar every phase of a run shows (tqdm, on stderr; silent when not a terminal
unless ``LOADTEST_PROGRESS=1``)."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from tqdm import tqdm


@contextmanager
def bar(desc: str, total: int | None, unit: str = "req") -> Iterator[Callable[[int], None]]:
    forced = os.environ.get("LOADTEST_PROGRESS") == "1"
    with tqdm(
        total=total,
        desc=desc,
        unit=unit,
        leave=False,
        dynamic_ncols=True,
        mininterval=0.5,
        disable=False if forced else not sys.stderr.isatty(),
    ) as progress:
        yield progress.update
