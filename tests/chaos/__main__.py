"""``make chaos`` (``python -m tests.chaos [scenario …]``): run the chaos scenarios one after
another and print, for each, how many requests were sent, succeeded, failed (by status), hung
and were lost. Exits 1 if any scenario saw what it must not (its tallies' problems).

Loopback only; bounded in time (each scenario at most :data:`SCENARIO_LIMIT` seconds) and in
count (each flood sends at most its ``count``). Add a scenario in
:mod:`tests.chaos.scenarios` (the store's and replicas') or :mod:`tests.chaos.path_scenarios`
(the request path's) — see the former's docstring.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

from tests.chaos import path_scenarios  # noqa: F401 - registers the request path's scenarios
from tests.chaos.harness import Tally
from tests.chaos.lab import Lab
from tests.chaos.scenarios import SCENARIOS
from tests.support.processes import asset

#: Seconds one scenario may run before it is stopped (and reported as a problem).
SCENARIO_LIMIT = 180.0


async def run(names: list[str], lab: Lab) -> bool:
    clean = True
    for name in names:
        started = time.monotonic()
        print(f"== {name}", flush=True)
        try:
            with lab.scenario():
                async with asyncio.timeout(SCENARIO_LIMIT):
                    tallies = await SCENARIOS[name](lab)
        except Exception as exc:  # a scenario that broke is reported, the rest still run
            failed = Tally(name)
            failed.problems.append(f"scenario failed: {exc!r}")
            tallies = [failed]
        for tally in tallies:
            print(tally.line(), flush=True)
            clean = clean and not tally.problems
        print(f"   ({time.monotonic() - started:.0f} s)", flush=True)
    return clean


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.chaos", description=__doc__)
    parser.add_argument("scenarios", nargs="*", choices=[[], *SCENARIOS], metavar="scenario")
    names = parser.parse_args().scenarios or list(SCENARIOS)
    model = asset("model", "LLAMA_GATEWAY_TEST_MODEL")
    binary = asset("llama-server", "LLAMA_SERVER_BIN")
    with tempfile.TemporaryDirectory(prefix="chaos-") as workdir:
        lab = Lab(model, binary, Path(workdir))
        try:
            clean = asyncio.run(run(names, lab))
        finally:
            lab.close()
    return 0 if clean else 1


if __name__ == "__main__":
    sys.exit(main())
