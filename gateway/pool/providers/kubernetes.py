"""The ``kubernetes`` provider: the ``llama-server`` pods behind a headless Service, found
through the cluster's DNS — no API rights needed.

A headless Service (``clusterIP: None``) answers an SRV query ``_<port>._tcp.<service>`` with
one record per ready pod (its own name and the named port), and an A query on ``<service>``
with the pods' addresses. The SRV answer is used when there is one (it carries the port);
otherwise the A records with the configured port.
"""

from __future__ import annotations

import dns.asyncresolver
import dns.exception
import dns.resolver

from gateway.config import KubernetesSettings

_EMPTY = (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer)


class DiscoveryError(RuntimeError):
    """DNS did not answer; the pool keeps what it had."""


class KubernetesDiscovery:
    name = "kubernetes"

    def __init__(self, settings: KubernetesSettings) -> None:
        self.settings = settings
        self.interval: float | None = settings.interval
        self.resolver = _resolver(settings.nameservers)

    async def discover(self) -> set[str]:
        try:
            found = await self._srv()
            if not found:
                found = {f"http://{ip}:{self.settings.port}" for ip in await self._a(self.service)}
        except dns.exception.DNSException as exc:
            raise DiscoveryError(f"DNS lookup of {self.service} failed: {exc}") from exc
        return found

    @property
    def service(self) -> str:
        return self.settings.service.rstrip(".") + "."

    async def _srv(self) -> set[str]:
        name = f"_{self.settings.port_name}._tcp.{self.service}"
        try:
            answer = await self.resolver.resolve(name, "SRV")
        except _EMPTY:
            return set()
        found = set()
        for record in answer:
            target = record.target.to_text()
            for ip in await self._a(target):
                found.add(f"http://{ip}:{record.port}")
        return found

    async def _a(self, name: str) -> list[str]:
        try:
            answer = await self.resolver.resolve(name, "A")
        except _EMPTY:
            return []
        return sorted(record.address for record in answer)

    async def close(self) -> None:
        pass


def _resolver(nameservers: list[str]) -> dns.asyncresolver.Resolver:
    if not nameservers:
        return dns.asyncresolver.Resolver()
    resolver = dns.asyncresolver.Resolver(configure=False)
    addresses, ports = [], set()
    for server in nameservers:
        host, sep, port = server.rpartition(":")
        addresses.append(host if sep else server)
        ports.add(int(port) if sep else 53)
    if len(ports) > 1:
        raise ValueError("kubernetes nameservers must share one port")
    resolver.nameservers = addresses
    resolver.port = ports.pop()
    resolver.lifetime = 3.0
    resolver.cache = None
    return resolver
