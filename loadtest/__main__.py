"""``python -m loadtest overhead|routing|overload|all [--smoke] [--out DIR]``."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from pathlib import Path

from loadtest import report
from loadtest.procs import pin_self
from loadtest.scenarios import SCENARIOS


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtest", description=__doc__)
    parser.add_argument("scenario", choices=[*SCENARIOS, "all"])
    parser.add_argument("--smoke", action="store_true", help="a seconds-long run (tests)")
    parser.add_argument("--out", type=Path, default=report.DEFAULT_OUT, help="results folder")
    args = parser.parse_args(argv)
    names = list(SCENARIOS) if args.scenario == "all" else [args.scenario]
    pin_self()  # the load generator stays off the gateway's core
    try:
        import uvloop

        run = uvloop.run
    except ImportError:
        run = asyncio.run
    for name in names:
        if not args.smoke:
            _settle()
        host = report.machine()
        started = time.monotonic()
        print(
            f"loadtest: {name}{' (smoke)' if args.smoke else ''} — load average "
            f"{host['load_average'][0]}",
            file=sys.stderr,
            flush=True,
        )
        result = run(SCENARIOS[name](args.out, smoke=args.smoke))
        result.config["seconds"] = round(time.monotonic() - started, 1)
        report.write(args.out, result, host, smoke=args.smoke)
        print(
            f"loadtest: {name} done in {result.config['seconds']} s → {args.out / (name + '.md')}",
            file=sys.stderr,
            flush=True,
        )
    return 0


def _settle(most: float = 150.0) -> None:
    """Wait, up to ``most`` seconds, for the 1-minute load average to fall below what
    :mod:`loadtest.report` calls a loaded machine — mostly the previous scenario's own load,
    which takes about a minute to fade — so each scenario starts on a quiet machine when it
    can. The report still states the load it started at."""
    quiet = report.LOADED_SHARE * (os.cpu_count() or 1)
    deadline = time.monotonic() + most
    while os.getloadavg()[0] > quiet and time.monotonic() < deadline:
        time.sleep(5)


if __name__ == "__main__":
    sys.exit(main())
