"""Real processes for the integration tests: ``llama-server`` backends on the real SmolLM2
model, and gateways started through the real command line. Both are the benchmark harness's
:class:`loadtest.procs.Process` (one copy of start, wait, log and stop) with the tests'
constructors; ``/metrics`` pages are read with prometheus_client's parser (:func:`scrape`)."""

from __future__ import annotations

import signal
import sys
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from loadtest.procs import Process, asset, free_port, llama_server_args, wait_http

__all__ = [
    "ROOT",
    "Gateway",
    "LlamaServer",
    "Samples",
    "asset",
    "free_port",
    "scrape",
    "wait_http",
]

ROOT = Path(__file__).resolve().parents[2]

#: A ``/metrics`` page: sample name (``_total``, ``_bucket``… included) → (labels, value)s.
Samples = dict[str, list[tuple[dict[str, str], float]]]


def scrape(url: str) -> Samples:
    """Every sample of the Prometheus page at ``url``."""
    found: Samples = {}
    text = httpx.get(url, timeout=5).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found.setdefault(sample.name, []).append((sample.labels, sample.value))
    return found


class LlamaServer(Process):
    """One real ``llama-server`` on a free port."""

    def __init__(
        self,
        binary: str,
        model: str,
        *,
        parallel: int = 4,
        ctx_size: int = 4096,
        alias: str = "smollm2",
        extra: tuple[str, ...] = (),
        port: int | None = None,
    ) -> None:
        super().__init__(port=port)
        self.args = [
            *llama_server_args(
                binary, model, self.port, parallel=parallel, ctx_size=ctx_size, alias=alias
            ),
            *extra,
        ]

    def kill(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()

    def slots(self) -> list[dict]:
        return httpx.get(f"{self.url}/slots", timeout=5).json()

    def busy_slots(self) -> int:
        return sum(1 for slot in self.slots() if slot.get("is_processing"))

    def metric(self, name: str) -> float:
        """One ``llamacpp:*`` counter from the backend's own ``/metrics``."""
        for sample_name in (f"llamacpp:{name}", f"llamacpp:{name}_total"):
            for _, value in scrape(f"{self.url}/metrics").get(sample_name, []):
                return value
        raise KeyError(name)


class Gateway(Process):
    """``llama-gateway serve`` as a subprocess, exactly as a user starts it; ready once
    ``/ready`` answers (``/health`` with ``wait_ready=False``). Its log is kept after the
    stop, for the assertions that read it."""

    ready_path = "/ready"
    start_timeout = 90.0
    keep_log = True

    def __init__(
        self, *args: str, env: dict[str, str] | None = None, wait_ready: bool = True
    ) -> None:
        super().__init__(env=env)
        self.args = [sys.executable, "-m", "gateway", "serve", "--port", str(self.port), *args]
        if not wait_ready:
            self.ready_path = "/health"

    def start(self, env: dict[str, str] | None = None, *, timeout: float | None = None) -> Gateway:
        try:
            super().start(env, timeout=timeout)
        except RuntimeError as exc:
            raise RuntimeError(f"{exc}\n--- gateway log ---\n{self.log()}") from None
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def create_key(self, admin_token: str, **fields: object) -> str:
        """A new API key's secret, made through the admin API (the gateway was started with
        ``--admin-token admin_token``); ``fields`` as ``POST /admin/keys`` takes them."""
        made = httpx.post(
            f"{self.url}/admin/keys",
            json={"name": "test", **fields},
            headers={"Authorization": f"Bearer {admin_token}"},
            timeout=30,
        )
        assert made.status_code == 201, made.text
        return str(made.json()["key"])

    def metric(self, name: str, **labels: str) -> float:
        """Sum of a gateway metric's samples whose labels include ``labels``."""
        return sum(
            value
            for found, value in scrape(f"{self.url}/metrics").get(name, [])
            if all(found.get(k) == v for k, v in labels.items())
        )
