"""``llama-gateway pull`` and ``POST /api/pull`` against a local hub (``hub_server.py``): a
whole download, a split model with its projector, a resumed download, a sha256 mismatch, 404s
and 401s, a plain URL — and a pulled model found by its name."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import gguf
import httpx
import numpy as np
import pytest

from gateway.models.download import _check_room
from gateway.models.errors import PullError
from gateway.models.library import resolve
from tests.cli.conftest import clean_env, run_cli
from tests.cli.hub_server import Hub, Repo
from tests.support.processes import Gateway


def tiny_gguf(path: Path, values: int = 256 * 1024) -> bytes:
    """A small real GGUF (one 1 MiB tensor), written with the ``gguf`` package."""
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_context_length(128)
    writer.add_tensor("weights", np.arange(values, dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path.read_bytes()


@pytest.fixture(scope="module")
def model_bytes(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    return tiny_gguf(tmp_path_factory.mktemp("gguf") / "tiny.gguf")


@pytest.fixture
def hub(model_bytes: bytes) -> Iterator[Hub]:
    server = Hub()
    server.repos["org/tiny-GGUF"] = Repo(
        {
            "tiny-Q4_K_M.gguf": model_bytes,
            "tiny-Q8_0.gguf": model_bytes[::-1],
            "mmproj-tiny-f16.gguf": b"projector" * 1000,
            "README.md": b"# tiny",
        }
    )
    parts = [model_bytes[i::3] for i in range(3)]
    server.repos["org/split-GGUF"] = Repo(
        {f"split-Q4_K_M-{i + 1:05d}-of-00003.gguf": part for i, part in enumerate(parts)}
    )
    server.repos["org/private-GGUF"] = Repo({"p-Q4_K_M.gguf": model_bytes}, token="hf_secret")
    yield server.start()
    server.stop()


def _pull(hub: Hub, folder: Path, *args: str, **env: str):  # type: ignore[no-untyped-def]
    return run_cli(
        "pull", *args, "--models-dir", str(folder), env=clean_env(HF_ENDPOINT=hub.url, **env)
    )


def _events(stdout: str) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines()]


def test_a_whole_download_with_its_projector(hub: Hub, tmp_path: Path, model_bytes: bytes) -> None:
    done = _pull(hub, tmp_path, "hf:org/tiny-GGUF:Q4_K_M", "--json")
    assert done.returncode == 0, done.stderr
    events = _events(done.stdout)
    statuses = [e["status"] for e in events]
    assert statuses[0] == "pulling manifest"
    assert statuses[-3:] == ["verifying sha256 digest", "writing manifest", "success"]
    model = [e for e in events if e["status"] == "downloading tiny-Q4_K_M.gguf"]
    assert model[-1]["completed"] == model[-1]["total"] == len(model_bytes)
    assert model[-1]["digest"] == "sha256:" + hashlib.sha256(model_bytes).hexdigest()
    assert any(e["status"] == "downloading mmproj-tiny-f16.gguf" for e in events)

    assert (tmp_path / "tiny-Q4_K_M.gguf").read_bytes() == model_bytes
    assert not (tmp_path / "tiny-Q8_0.gguf").exists()  # only the quantization asked for
    assert not list(tmp_path.glob("*.partial"))
    manifest = json.loads((tmp_path / "manifests" / "tiny-Q4_K_M.json").read_text())
    assert manifest["model"] == "tiny-Q4_K_M.gguf"
    assert manifest["mmproj"] == "mmproj-tiny-f16.gguf"
    # The name finds the file, ignoring case, and brings its projector.
    assert resolve(tmp_path, "TINY-q4_k_m") == (
        tmp_path / "tiny-Q4_K_M.gguf",
        tmp_path / "mmproj-tiny-f16.gguf",
    )


def test_progress_bars_and_how_to_serve_it(hub: Hub, tmp_path: Path) -> None:
    done = _pull(hub, tmp_path, "hf:org/tiny-GGUF:q8_0", "--name", "tiny")
    assert done.returncode == 0, done.stderr
    assert "downloading tiny-Q8_0.gguf" in done.stderr  # rich's bar, on stderr
    assert "serve it with: llama-gateway serve --model tiny" in done.stdout
    assert resolve(tmp_path, "tiny") is not None


def test_ollamas_hf_co_names_are_hub_sources(hub: Hub, tmp_path: Path) -> None:
    done = _pull(hub, tmp_path, "hf.co/org/tiny-GGUF:Q8_0", "--json")
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "tiny-Q8_0.gguf").is_file()


def test_a_split_model_comes_whole(hub: Hub, tmp_path: Path) -> None:
    done = _pull(hub, tmp_path, "hf:org/split-GGUF:Q4_K_M", "--json")
    assert done.returncode == 0, done.stderr
    names = sorted(p.name for p in tmp_path.glob("*.gguf"))
    assert names == [f"split-Q4_K_M-{i:05d}-of-00003.gguf" for i in (1, 2, 3)]
    manifest = json.loads((tmp_path / "manifests" / "split-Q4_K_M.json").read_text())
    assert manifest["model"] == "split-Q4_K_M-00001-of-00003.gguf"
    assert len(manifest["files"]) == 3


def test_an_interrupted_download_resumes_with_a_range(
    hub: Hub, tmp_path: Path, model_bytes: bytes
) -> None:
    hub.cut_after["tiny-Q4_K_M.gguf"] = len(model_bytes) // 2
    first = _pull(hub, tmp_path, "hf:org/tiny-GGUF/tiny-Q4_K_M.gguf")
    assert first.returncode == 1
    assert "pull again to resume" in first.stderr
    partial = tmp_path / "tiny-Q4_K_M.gguf.partial"
    kept = partial.stat().st_size
    assert 0 < kept < len(model_bytes)
    assert not (tmp_path / "tiny-Q4_K_M.gguf").exists()

    second = _pull(hub, tmp_path, "hf:org/tiny-GGUF/tiny-Q4_K_M.gguf")
    assert second.returncode == 0, second.stderr
    assert hub.downloads[-1] == ("tiny-Q4_K_M.gguf", f"bytes={kept}-")
    assert (tmp_path / "tiny-Q4_K_M.gguf").read_bytes() == model_bytes  # and its sha256 held
    assert not partial.exists()


def test_a_sha256_mismatch_is_refused_and_nothing_is_kept(hub: Hub, tmp_path: Path) -> None:
    hub.repos["org/tiny-GGUF"].claimed_sha256["tiny-Q4_K_M.gguf"] = "0" * 64
    done = _pull(hub, tmp_path, "hf:org/tiny-GGUF:Q4_K_M")
    assert done.returncode == 1
    assert "sha256 mismatch for tiny-Q4_K_M.gguf" in done.stderr
    assert not (tmp_path / "tiny-Q4_K_M.gguf").exists()
    assert not (tmp_path / "tiny-Q4_K_M.gguf.partial").exists()
    assert not (tmp_path / "manifests" / "tiny-Q4_K_M.json").exists()


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("hf:org/missing-GGUF:Q4_K_M", "no repository org/missing-GGUF at"),
        ("hf:org/tiny-GGUF:Q2_K", "org/tiny-GGUF has no Q2_K GGUF; it has Q4_K_M, Q8_0"),
        ("hf:org/tiny-GGUF/absent.gguf", "org/tiny-GGUF has no file absent.gguf"),
    ],
)
def test_404s_say_what_was_not_found(hub: Hub, tmp_path: Path, source: str, message: str) -> None:
    done = _pull(hub, tmp_path, source)
    assert done.returncode == 1
    last = done.stderr.strip().splitlines()[-1]  # after the progress lines: one error line
    assert last.startswith("llama-gateway: ") and message in last
    assert "Traceback" not in done.stderr


def test_a_url_that_is_not_there(hub: Hub, tmp_path: Path) -> None:
    url = f"{hub.url}/org/tiny-GGUF/resolve/main/gone.gguf"
    done = _pull(hub, tmp_path, url)
    assert done.returncode == 1
    assert f"not found: {url}" in done.stderr


def test_a_plain_url(hub: Hub, tmp_path: Path, model_bytes: bytes) -> None:
    done = _pull(hub, tmp_path, f"{hub.url}/org/tiny-GGUF/resolve/main/tiny-Q8_0.gguf")
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "tiny-Q8_0.gguf").read_bytes() == model_bytes[::-1]


def test_a_private_repository_needs_hf_token(hub: Hub, tmp_path: Path) -> None:
    refused = _pull(hub, tmp_path, "hf:org/private-GGUF:Q4_K_M")
    assert refused.returncode == 1
    assert "set HF_TOKEN" in refused.stderr
    done = _pull(hub, tmp_path, "hf:org/private-GGUF:Q4_K_M", HF_TOKEN="hf_secret")
    assert done.returncode == 0, done.stderr
    assert "hf_secret" not in done.stdout + done.stderr


def test_a_source_that_means_nothing_exits_2(hub: Hub, tmp_path: Path) -> None:
    done = _pull(hub, tmp_path, "ftp://example.com/x.gguf")
    assert done.returncode == 2
    assert "give an https:// URL, hf:ORG/REPO:QUANT or hf:ORG/REPO/FILE.gguf" in done.stderr


def test_no_room_on_disk_is_a_507_before_any_byte(tmp_path: Path) -> None:
    with pytest.raises(PullError) as caught:
        _check_room(tmp_path, 1 << 62, "huge.gguf")  # the real free space of this disk
    assert caught.value.status == 507
    assert caught.value.message.startswith("disk full: huge.gguf needs")


# -- POST /api/pull ------------------------------------------------------------------------
def _gateway(hub: Hub, folder: Path, *args: str) -> Gateway:
    return Gateway(
        "--backend",
        "http://127.0.0.1:9",
        "--no-auth",
        "--models-dir",
        str(folder),
        *args,
        env={"HF_ENDPOINT": hub.url},
        wait_ready=False,
    )


def test_api_pull_streams_ollama_progress_with_the_admin_token(
    hub: Hub, tmp_path: Path, model_bytes: bytes
) -> None:
    gw = _gateway(hub, tmp_path, "--admin-token", "admin-secret").start()
    try:
        body = {"model": "hf:org/tiny-GGUF:Q4_K_M"}
        refused = httpx.post(f"{gw.url}/api/pull", json=body, timeout=30)
        assert refused.status_code == 401
        assert set(refused.json()) == {"error"}  # Ollama's error shape

        auth = {"Authorization": "Bearer admin-secret"}
        answer = httpx.post(f"{gw.url}/api/pull", json=body, headers=auth, timeout=60)
        assert answer.status_code == 200
        assert answer.headers["content-type"].startswith("application/x-ndjson")
        events = [json.loads(line) for line in answer.text.splitlines()]
        assert events[0] == {"status": "pulling manifest"}
        downloads = [e for e in events if e["status"] == "downloading tiny-Q4_K_M.gguf"]
        assert downloads[-1]["completed"] == downloads[-1]["total"] == len(model_bytes)
        assert events[-1]["status"] == "success"
        assert (tmp_path / "tiny-Q4_K_M.gguf").read_bytes() == model_bytes

        missing = {"model": "hf:org/missing-GGUF:Q4_K_M", "stream": False}
        answer = httpx.post(f"{gw.url}/api/pull", json=missing, headers=auth, timeout=30)
        assert answer.status_code == 404
        assert answer.json()["error"].startswith("no repository org/missing-GGUF")
    finally:
        gw.stop()


def test_api_pull_is_off_without_an_admin_token(hub: Hub, tmp_path: Path) -> None:
    gw = _gateway(hub, tmp_path).start()
    try:
        answer = httpx.post(f"{gw.url}/api/pull", json={"model": "hf:org/tiny-GGUF"}, timeout=30)
        assert answer.status_code == 403
        assert "--admin-token" in answer.json()["error"]
        assert not list(tmp_path.glob("*.gguf"))
    finally:
        gw.stop()
