"""Dockerfile.cpu and Dockerfile.cuda: hadolint with no findings, and the shape the images
promise (targets, pinned bases, non-root users, health checks, OCI labels)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from .conftest import DOCKERFILES, ROOT


def stages(path: Path) -> dict[str, list[str]]:
    """Instructions of each named stage, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", path.read_text())
    found: dict[str, list[str]] = {}
    current: list[str] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        match = re.match(r"FROM\s+(\S+)(?:\s+AS\s+(\S+))?", line, re.IGNORECASE)
        if match:
            current = found.setdefault(match.group(2) or match.group(1), [])
        current.append(line)
    return found


def instructions(stage: list[str], keyword: str) -> list[str]:
    return [line[len(keyword) :].strip() for line in stage if line.upper().startswith(keyword)]


@pytest.mark.parametrize("name", sorted(DOCKERFILES))
def test_hadolint_finds_nothing(hadolint: Path, name: str) -> None:
    # Accepted warnings carry an inline `# hadolint ignore=` with the reason above it, so any
    # finding left (error, warning or info) is new and fails the build.
    done = subprocess.run(
        [str(hadolint), "--no-color", "--failure-threshold", "info", str(DOCKERFILES[name])],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize(
    ("name", "targets"),
    [("cpu", {"gateway", "runner-cpu"}), ("cuda", {"runner", "all-in-one"})],
)
def test_targets_exist(name: str, targets: set[str]) -> None:
    assert targets <= set(stages(DOCKERFILES[name]))


@pytest.mark.parametrize("name", sorted(DOCKERFILES))
def test_base_images_are_pinned(name: str) -> None:
    text = DOCKERFILES[name].read_text()
    names = set(stages(DOCKERFILES[name]))
    for base in re.findall(r"^FROM\s+(\S+)", text, re.MULTILINE):
        if base in names:
            continue  # a stage of this file
        image, _, tag = base.rpartition(":")
        assert image and tag and tag != "latest", f"{base} is not pinned to a version"
        assert re.search(r"\d", tag), f"{base}: tag {tag!r} names no version"
    assert re.search(r"^ARG LLAMA_CPP_VERSION=b\d+$", text, re.MULTILINE), "llama.cpp unpinned"


def test_cuda_build_matches_upstream_flags() -> None:
    text = DOCKERFILES["cuda"].read_text()
    assert "FROM nvidia/cuda:12.8.1-devel-ubuntu24.04 AS build" in text
    assert "nvidia/cuda:12.8.1-runtime-ubuntu24.04" in text
    for flag in (
        "-DGGML_CUDA=ON",
        "-DGGML_NATIVE=OFF",
        "-DGGML_BACKEND_DL=ON",
        "-DGGML_CPU_ALL_VARIANTS=ON",
        '-DCMAKE_CUDA_ARCHITECTURES="${CUDA_ARCHITECTURES}"',
    ):
        assert flag in text
    assert re.search(r'^ARG CUDA_ARCHITECTURES="75;80;86;89;90', text, re.MULTILINE)


FINAL_STAGES = [
    ("cpu", "gateway"),
    ("cpu", "runner-cpu"),
    ("cuda", "runner"),
    ("cuda", "all-in-one"),
]


@pytest.mark.parametrize(("name", "target"), FINAL_STAGES)
def test_final_stages_run_unprivileged_with_a_health_check(name: str, target: str) -> None:
    stage = stages(DOCKERFILES[name])[target]
    users = instructions(stage, "USER")
    assert users and users[-1].split(":")[0] not in {"root", "0"}
    assert instructions(stage, "HEALTHCHECK"), f"{target} has no HEALTHCHECK"
    assert instructions(stage, "ENTRYPOINT"), f"{target} has no ENTRYPOINT"
    assert instructions(stage, "EXPOSE"), f"{target} exposes no port"


@pytest.mark.parametrize(("name", "target"), FINAL_STAGES)
def test_final_stages_carry_oci_labels(name: str, target: str) -> None:
    labels = " ".join(instructions(stages(DOCKERFILES[name])[target], "LABEL"))
    for key in ("title", "description", "version", "licenses", "source"):
        assert f"org.opencontainers.image.{key}=" in labels, f"{target}: no {key} label"


@pytest.mark.parametrize(("name", "target"), [("cpu", "gateway"), ("cuda", "all-in-one")])
def test_gateway_stages_have_no_compilers(name: str, target: str) -> None:
    stage = " ".join(stages(DOCKERFILES[name])[target])
    for tool in ("build-essential", "gcc", "g++", "cmake", "-devel"):
        assert tool not in stage, f"{target} installs {tool}"


def test_build_context_keeps_what_pip_install_needs() -> None:
    # `pip install .` reads pyproject.toml and its `readme`; the package is under gateway/.
    ignore = (ROOT / ".dockerignore").read_text().splitlines()
    assert "*" in ignore
    for needed in ("!pyproject.toml", "!README.md", "!gateway/"):
        assert needed in ignore
