"""The three scenarios; each has ``run(out, *, smoke) -> ScenarioResult`` (a coroutine)."""

from __future__ import annotations

from loadtest.scenarios import overhead, overload, routing

SCENARIOS = {"overhead": overhead.run, "routing": routing.run, "overload": overload.run}
