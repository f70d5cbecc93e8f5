"""``python -m loadtest overhead|routing|overload|all [--smoke] [--out DIR]``."""

from __future__ import annotations

import argparse
import asyncio
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


if __name__ == "__main__":
    sys.exit(main())
