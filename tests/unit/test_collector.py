"""The collector's tuning for serving, run in a process of its own (it changes the
interpreter's global collector state): the thresholds set, what existed frozen, and cycles
made afterwards still collected."""

from __future__ import annotations

import json
import subprocess
import sys

from gateway.cli.collector import THRESHOLDS

_PROBE = """
import gc, json, weakref
from gateway.cli.collector import tune_for_serving

class Node:
    pass

before = gc.get_freeze_count()
tune_for_serving()
frozen = gc.get_freeze_count()
node = Node(); node.me = node  # a cycle made after the tuning
alive = weakref.ref(node)
del node
gc.collect()
print(json.dumps({"thresholds": gc.get_threshold(), "before": before, "frozen": frozen,
                  "cycle_collected": alive() is None}))
"""


def test_serving_thresholds_a_frozen_startup_and_cycles_still_collected() -> None:
    done = subprocess.run(
        [sys.executable, "-c", _PROBE], capture_output=True, text=True, timeout=60, check=True
    )
    found = json.loads(done.stdout)
    assert tuple(found["thresholds"]) == THRESHOLDS
    assert found["before"] == 0 and found["frozen"] > 1000  # the modules loaded so far
    assert found["cycle_collected"]
