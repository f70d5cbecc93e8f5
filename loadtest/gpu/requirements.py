"""Print, one per line, what the GPU run installs offline: the gateway's runtime dependencies
and its build backend (both read from ``pyproject.toml``, so the list cannot drift from it)
and the load-test harness's own packages (taken from the ``test`` extra by name: the rest of
that extra — SDKs, browsers, fuzzers — is not needed to run a benchmark).

    python loadtest/gpu/requirements.py         # what `run.sh prepare` downloads as wheels
    python loadtest/gpu/requirements.py --harness  # the harness's alone (beside the checkout)
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"
#: What ``loadtest/`` imports beyond the gateway's own dependencies (progress bars and plots).
HARNESS = ("tqdm", "matplotlib")


def _name(requirement: str) -> str:
    return re.split(r"[\s\[<>=!~;]", requirement, maxsplit=1)[0].lower()


def harness(project: dict) -> list[str]:
    test = project["project"]["optional-dependencies"]["test"]
    found = [r for r in test if _name(r) in HARNESS]
    missing = set(HARNESS) - {_name(r) for r in found}
    if missing:
        raise SystemExit(f"pyproject.toml's test extra no longer lists {sorted(missing)}")
    return found


def everything(project: dict) -> list[str]:
    return [
        *project["project"]["dependencies"],
        *project["build-system"]["requires"],
        *harness(project),
    ]


def main(argv: list[str]) -> int:
    project = tomllib.loads(PYPROJECT.read_text())
    print("\n".join(harness(project) if "--harness" in argv else everything(project)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
