"""The ``kubernetes`` provider: ``llama-server`` pods behind a headless Service, found through
DNS — here a real DNS server the test runs, answering for two real ``llama-server`` s."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.dns_server import DnsServer
from tests.support.processes import LlamaServer
from tests.support.runners import chat, config_gateway, wait_for

pytestmark = pytest.mark.llama

SERVICE = "llama-server.llm.svc.cluster.local."


@pytest.fixture
def dns() -> Iterator[DnsServer]:
    server = DnsServer().start()
    try:
        yield server
    finally:
        server.stop()


def _backends(url: str) -> dict[str, str]:
    ready = httpx.get(f"{url}/ready", timeout=5).json()
    return {b["backend"]: b["state"] for b in ready["backends"]}


def test_pods_are_found_through_srv_records(
    dns: DnsServer, backends: list[LlamaServer], tmp_path: Path
) -> None:
    zone = dns.zone
    pods = [f"llama-server-{i}.llama-server.llm.svc.cluster.local." for i in range(2)]
    zone.srv[f"_http._tcp.{SERVICE}"] = [(pods[0], backends[0].port), (pods[1], backends[1].port)]
    zone.a.update({pods[0]: ["127.0.0.1"], pods[1]: ["127.0.0.1"]})
    config = {
        "kubernetes": {
            "service": SERVICE.rstrip("."),
            "nameservers": [dns.nameserver],
            "interval": 0.5,
        }
    }
    gw = config_gateway(tmp_path, config)
    gw.start()
    try:
        names = {f"127.0.0.1:{s.port}" for s in backends}
        wait_for("both pods", lambda: set(_backends(gw.url)) == names, 20)
        wait_for("them to be ready", lambda: set(_backends(gw.url).values()) == {"ready"}, 20)
        assert chat(gw, "smollm2").status_code == 200

        # DNS fails for a while: the pool keeps what it had.
        zone.failing = True
        asked = len(zone.queries)
        wait_for("more lookups", lambda: len(zone.queries) > asked + 2, 10)
        assert set(_backends(gw.url)) == names
        zone.failing = False

        # A pod leaves the Service: drained, then removed.
        zone.srv[f"_http._tcp.{SERVICE}"] = [(pods[0], backends[0].port)]
        wait_for(
            "the pod to leave", lambda: set(_backends(gw.url)) == {f"127.0.0.1:{backends[0].port}"}
        )
        assert chat(gw, "smollm2").status_code == 200
        assert "kubernetes: backend" in gw.log()
    finally:
        gw.stop()


def test_a_records_with_the_configured_port(
    dns: DnsServer, backends: list[LlamaServer], tmp_path: Path
) -> None:
    dns.zone.a[SERVICE] = ["127.0.0.1"]  # no SRV records: A answers, with kubernetes.port
    config = {
        "kubernetes": {
            "service": SERVICE.rstrip("."),
            "port": backends[1].port,
            "nameservers": [dns.nameserver],
            "interval": 0.5,
        }
    }
    gw = config_gateway(tmp_path, config)
    gw.start()
    try:
        wait_for(
            "the pod", lambda: _backends(gw.url) == {f"127.0.0.1:{backends[1].port}": "ready"}, 20
        )
        assert chat(gw, "smollm2").status_code == 200
    finally:
        gw.stop()
