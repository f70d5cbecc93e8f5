"""Each load-test scenario in its smoke size: it must finish and write a well-formed report
(JSON with its keys, Markdown, valid PNGs). No figure is asserted: these only keep the harness
from rotting; the benchmark itself is ``make bench``."""

from __future__ import annotations

import json
import os
import re
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import pytest

from loadtest.timeline import read_timelines, steps_table
from loadtest.timeline_marks import STEPS
from tests.support.processes import ROOT, asset

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _valid_png(path: Path) -> bool:
    """Signature, then an IHDR chunk whose CRC matches, with a non-empty image."""
    data = path.read_bytes()
    if not data.startswith(PNG_SIGNATURE) or len(data) < 33:
        return False
    length, kind = struct.unpack(">I4s", data[8:16])
    if kind != b"IHDR" or length != 13:
        return False
    (crc,) = struct.unpack(">I", data[29:33])
    width, height = struct.unpack(">II", data[16:24])
    return crc == zlib.crc32(data[12:29]) and width > 0 and height > 0 and b"IEND" in data[-12:]


@pytest.fixture(scope="module")
def assets_env() -> dict[str, str]:
    return {
        "LLAMA_GATEWAY_TEST_MODEL": asset("model", "LLAMA_GATEWAY_TEST_MODEL"),
        "LLAMA_SERVER_BIN": asset("llama-server", "LLAMA_SERVER_BIN"),
    }


@pytest.mark.llama
@pytest.mark.parametrize("scenario", ["overhead", "routing", "overload"])
def test_scenario_smoke(scenario: str, tmp_path: Path, assets_env: dict[str, str]) -> None:
    run = subprocess.run(
        [sys.executable, "-m", "loadtest", scenario, "--smoke", "--out", str(tmp_path)],
        cwd=ROOT,
        env={**os.environ, **assets_env},
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert run.returncode == 0, run.stderr[-4000:]

    document = json.loads((tmp_path / f"{scenario}.json").read_text())
    for key in ("scenario", "smoke", "machine", "config", "results", "targets", "plots"):
        assert key in document, key
    assert document["scenario"] == scenario and document["smoke"] is True
    for key in ("nproc", "cpu", "date", "load_average"):
        assert key in document["machine"], key
    assert document["targets"], "each scenario states its goals"
    for target in document["targets"]:
        assert {"name", "goal", "value", "met"} <= target.keys()

    markdown = (tmp_path / f"{scenario}.md").read_text()
    assert markdown.startswith(f"## {scenario}")
    if scenario == "overhead":  # one request taken apart, every step of the path in order
        steps = document["results"]["one_connection_steps"]["steps"]
        assert [row["step"] for row in steps] == [step for step, _ in STEPS]
        assert "#### Where one request's time goes" in markdown
        assert "one round trip before the send adds at least" in markdown  # its arithmetic
    assert (tmp_path / "report.md").read_text().startswith("# llama-gateway benchmark report")

    assert document["plots"], "each scenario draws at least one plot"
    for name in document["plots"]:
        assert _valid_png(tmp_path / name), name
        assert f"]({name})" in markdown


def test_ab_compares_trees_by_cpu_per_request() -> None:
    """``loadtest.ab`` on this tree twice (once without the limits script and the affinity
    lookup): a round each, a CPU figure per request each; at one connection, a latency
    figure; and bad input refused up front."""
    ab = [sys.executable, "-m", "loadtest.ab"]

    def medians(*args: str, heading: str) -> str:
        run = subprocess.run(
            [*ab, "--rounds", "1", "--seconds", "1", *args],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=180,
        )
        assert run.returncode == 0, run.stderr[-4000:]
        return run.stdout.split(heading, 1)[1]

    cpu = medians(".", ".:nolimits,leastbusy", heading="medians over 1 rounds, redis://")
    figures = re.findall(r"  (\S+): ([\d.]+) ms a request, ([\d,]+) req/s", cpu)
    assert [label for label, _, _ in figures] == [".", ".:nolimits,leastbusy"]
    assert all(float(ms) > 0 and int(rate.replace(",", "")) > 0 for _, ms, rate in figures)

    latency = medians("--one-connection", ".", heading="redis://, 1 connection(s)")
    assert float(re.findall(r"  \.: .* p50 ([\d.]+) ms", latency)[0]) > 0

    refused = subprocess.run([*ab, ".:fast"], cwd=ROOT, capture_output=True, text=True)
    assert refused.returncode != 0 and "unknown flags ['fast']" in refused.stderr


def test_timeline_takes_one_request_apart_step_by_step() -> None:
    """``loadtest.timeline``: every step of the path marked, in the path's order, each
    later than the one before; and the floor's and the store's figures beside them."""
    run = subprocess.run(
        [sys.executable, "-m", "loadtest.timeline", "--seconds", "1"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert run.returncode == 0, run.stderr[-4000:]
    rows = re.findall(r"^\| `(\w+)` \| .* \| (\d+) \| (\d+) \|$", run.stdout, re.MULTILINE)
    assert [step for step, _, _ in rows] == [step for step, _ in STEPS]
    since_start = [int(at) for _, _, at in rows]
    assert since_start == sorted(since_start) and since_start[-1] > 0
    assert re.search(r"relay floor: [\d.]+ ms; a bare PING .*: \d+ µs", run.stdout)


def test_timelines_leave_out_the_warm_up_and_take_medians_per_step() -> None:
    lines = [
        "100 start:0.0 parsed:10.0 end:30.0",  # the warm-up's
        "200 start:0.0 parsed:20.0 end:40.0",
        "300 start:0.0 parsed:40.0 end:50.0",
        "400 start:0.0 parsed:30.0 end:90.0",
    ]
    table = steps_table(read_timelines(lines, since_ns=200))
    assert [(step, since, at) for step, _, since, at in table] == [
        ("start", 0.0, 0.0),
        ("parsed", 30.0, 30.0),
        ("end", 20.0, 50.0),
    ]
