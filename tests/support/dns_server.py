"""A real DNS server for the tests (``dnslib``, UDP on a free port) holding a Kubernetes-like
zone: a headless Service answers SRV with one record per pod and A with the pods' addresses.
The records can be changed while it runs; ``failing`` makes it answer SERVFAIL."""

from __future__ import annotations

from dnslib import QTYPE, RCODE, RR, SRV, A
from dnslib.server import BaseResolver, DNSServer

from tests.support.processes import free_port


class Zone(BaseResolver):
    def __init__(self) -> None:
        #: name → SRV targets ``(target name, port)``.
        self.srv: dict[str, list[tuple[str, int]]] = {}
        #: name → IPv4 addresses.
        self.a: dict[str, list[str]] = {}
        self.failing = False
        self.queries: list[tuple[str, str]] = []

    def resolve(self, request, handler):  # dnslib's interface
        reply = request.reply()
        name = str(request.q.qname)
        kind = QTYPE[request.q.qtype]
        self.queries.append((name, kind))
        if self.failing:
            reply.header.rcode = RCODE.SERVFAIL
        elif kind == "SRV" and name in self.srv:
            for target, port in self.srv[name]:
                reply.add_answer(RR(name, QTYPE.SRV, rdata=SRV(0, 10, port, target), ttl=5))
        elif kind == "A" and name in self.a:
            for ip in self.a[name]:
                reply.add_answer(RR(name, QTYPE.A, rdata=A(ip), ttl=5))
        elif name not in self.srv and name not in self.a:
            reply.header.rcode = RCODE.NXDOMAIN
        return reply


class DnsServer:
    def __init__(self) -> None:
        self.zone = Zone()
        self.port = free_port()
        self.server = DNSServer(self.zone, port=self.port, address="127.0.0.1", logger=_Quiet())

    @property
    def nameserver(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> DnsServer:
        self.server.start_thread()
        return self

    def stop(self) -> None:
        self.server.stop()


class _Quiet:
    def __getattr__(self, name: str):
        return lambda *args, **kwargs: None
