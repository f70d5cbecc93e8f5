"""A small Docker Engine API emulator: it stands in for a Docker engine, which cannot run on
the machines these tests run on (no daemon, no container runtime).

It speaks the HTTP endpoints the ``docker`` SDK calls for the gateway — ``/_ping``,
``/version``, ``containers/create|start|json|stop|logs``, ``DELETE containers/{id}`` and the
container list with label and status filters — and runs each "container" as a local
``llama-server`` process: the image's entrypoint is taken to be ``llama-server``, the
container's port 8080 is the host port it publishes, and paths under a bind mount's target are
rewritten to the bind's source. So the SDK's real requests, the labels, the device requests,
the read-only model mount, the health waits and the clean-up are all exercised.

Every create request is checked (a bind mount that is not read-only, a device request that
is not a GPU request, a container without the gateway's label are refused with 400, as a
careful engine policy would) and kept in :attr:`DockerEmulator.created` for the tests to read.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import struct
import subprocess
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.support.processes import free_port

API_VERSION = "1.45"
SERVER_PORT = "8080/tcp"


@dataclass
class FakeContainer:
    id: str
    name: str
    body: dict[str, Any]
    host_port: int | None
    log_path: Path
    process: subprocess.Popen | None = None
    created: float = field(default_factory=time.time)
    started: bool = False

    @property
    def labels(self) -> dict[str, str]:
        return self.body.get("Labels") or {}

    def status(self) -> tuple[str, int]:
        if self.process is None:
            return ("created", 0)
        code = self.process.poll()
        return ("running", 0) if code is None else ("exited", code)

    def inspect(self) -> dict[str, Any]:
        status, code = self.status()
        ports = {}
        if self.host_port is not None:
            ports[SERVER_PORT] = [{"HostIp": "127.0.0.1", "HostPort": str(self.host_port)}]
        return {
            "Id": self.id,
            "Name": "/" + self.name,
            "Created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.created)),
            "Image": "sha256:" + "0" * 64,
            "State": {
                "Status": status,
                "Running": status == "running",
                "ExitCode": code,
                "Pid": self.process.pid if self.process and status == "running" else 0,
            },
            "Config": {
                "Image": self.body.get("Image"),
                "Cmd": self.body.get("Cmd"),
                "Env": self.body.get("Env") or [],
                "Labels": self.labels,
                "Tty": False,
            },
            "HostConfig": self.body.get("HostConfig") or {},
            "NetworkSettings": {"Ports": ports, "Networks": {}},
        }

    def summary(self) -> dict[str, Any]:
        status, _ = self.status()
        return {
            "Id": self.id,
            "Names": ["/" + self.name],
            "Image": self.body.get("Image"),
            "Labels": self.labels,
            "State": status,
            "Status": status,
        }


class DockerEmulator:
    """The emulator's state and its HTTP server (one thread per request)."""

    def __init__(self, llama_bin: str, workdir: Path) -> None:
        self.llama_bin = llama_bin
        self.workdir = workdir
        self.containers: dict[str, FakeContainer] = {}
        #: Every accepted create request body, in order.
        self.created: list[dict[str, Any]] = []
        #: Every (method, path) the SDK sent, in order.
        self.calls: list[tuple[str, str]] = []
        self.lock = threading.Lock()
        self.port = free_port()
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), _handler(self))
        self.server.daemon_threads = True
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        """The ``DOCKER_HOST`` of this engine."""
        return f"tcp://127.0.0.1:{self.port}"

    def start(self) -> DockerEmulator:
        self._thread.start()
        return self

    def stop(self) -> None:
        for container in list(self.containers.values()):
            self._kill(container)
        self.server.shutdown()
        self.server.server_close()

    # -- the engine's operations ---------------------------------------------------------

    def create(self, name: str | None, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        problem = _check(body)
        if problem:
            return 400, {"message": problem}
        cid = secrets.token_hex(32)
        name = name or f"emulated_{cid[:8]}"
        if any(c.name == name for c in self.containers.values()):
            return 409, {"message": f'Conflict. The container name "/{name}" is already in use'}
        bindings = ((body.get("HostConfig") or {}).get("PortBindings") or {}).get(SERVER_PORT)
        host_port = None
        if bindings:
            host_port = int(bindings[0].get("HostPort") or 0) or free_port()
        log_path = self.workdir / f"{name}.log"
        with self.lock:
            self.containers[cid] = FakeContainer(cid, name, body, host_port, log_path)
            self.created.append(body)
        return 201, {"Id": cid, "Warnings": []}

    def start_container(self, container: FakeContainer) -> None:
        if container.process is not None and container.process.poll() is None:
            return
        body = container.body
        mounts = {}
        for bind in (body.get("HostConfig") or {}).get("Binds") or []:
            source, target, _mode = bind.split(":")
            mounts[target.rstrip("/")] = source.rstrip("/")
        args = [_rewrite(arg, mounts) for arg in body.get("Cmd") or []]
        env = dict(os.environ)
        env.update(item.split("=", 1) for item in body.get("Env") or [])
        if container.host_port is not None:
            env["LLAMA_ARG_HOST"] = "127.0.0.1"
            env["LLAMA_ARG_PORT"] = str(container.host_port)
        log = container.log_path.open("wb")
        container.process = subprocess.Popen(
            [self.llama_bin, *args], stdout=log, stderr=subprocess.STDOUT, env=env
        )
        log.close()
        container.started = True

    def stop_container(self, container: FakeContainer, grace: float) -> None:
        process = container.process
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(grace)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def remove(self, container: FakeContainer, force: bool) -> int:
        if container.status()[0] == "running" and not force:
            return 409
        self._kill(container)
        with self.lock:
            self.containers.pop(container.id, None)
        return 204

    def list(self, all_: bool, filters: dict[str, list[str]]) -> list[dict[str, Any]]:
        found = []
        for container in list(self.containers.values()):
            status = container.status()[0]
            if not all_ and status != "running":
                continue
            if "status" in filters and status not in filters["status"]:
                continue
            if not all(_label_matches(container.labels, f) for f in filters.get("label", [])):
                continue
            found.append(container.summary())
        return found

    def logs(self, container: FakeContainer, tail: str) -> bytes:
        try:
            lines = container.log_path.read_bytes().splitlines(keepends=True)
        except FileNotFoundError:
            lines = []
        if tail not in ("", "all"):
            lines = lines[-int(tail) :] if int(tail) else []
        # Non-TTY containers answer in the multiplexed stream format: 8-byte frame headers.
        return b"".join(struct.pack(">BxxxL", 1, len(line)) + line for line in lines)

    def find(self, ref: str) -> FakeContainer | None:
        for container in self.containers.values():
            if container.id.startswith(ref) or container.name == ref:
                return container
        return None

    def _kill(self, container: FakeContainer) -> None:
        if container.process is not None and container.process.poll() is None:
            container.process.kill()
            container.process.wait()


def _check(body: dict[str, Any]) -> str | None:
    """Why a create request is refused, or None."""
    labels = body.get("Labels") or {}
    if "llama-gateway.gateway" not in labels:
        return "containers must carry the llama-gateway.gateway label"
    host = body.get("HostConfig") or {}
    for bind in host.get("Binds") or []:
        if not bind.endswith(":ro"):
            return f"bind mount {bind!r} must be read-only"
    for request in host.get("DeviceRequests") or []:
        if request.get("Capabilities") != [["gpu"]] or not request.get("DeviceIDs"):
            return f"device request {request!r} must ask for GPUs by id"
    return None


def _rewrite(arg: str, mounts: dict[str, str]) -> str:
    for target, source in mounts.items():
        if arg == target or arg.startswith(target + "/"):
            return source + arg[len(target) :]
    return arg


def _label_matches(labels: dict[str, str], wanted: str) -> bool:
    key, sep, value = wanted.partition("=")
    return key in labels and (not sep or labels[key] == value)


def _handler(engine: DockerEmulator) -> type[BaseHTTPRequestHandler]:
    routes = [
        ("GET", r"/_ping", "ping"),
        ("HEAD", r"/_ping", "ping"),
        ("GET", r"/version", "version"),
        ("POST", r"/containers/create", "create"),
        ("GET", r"/containers/json", "list"),
        ("GET", r"/containers/(?P<ref>[^/]+)/json", "inspect"),
        ("POST", r"/containers/(?P<ref>[^/]+)/start", "start"),
        ("POST", r"/containers/(?P<ref>[^/]+)/stop", "stop"),
        ("POST", r"/containers/(?P<ref>[^/]+)/kill", "kill"),
        ("GET", r"/containers/(?P<ref>[^/]+)/logs", "logs"),
        ("DELETE", r"/containers/(?P<ref>[^/]+)", "remove"),
    ]

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:  # quiet
            pass

        def do_GET(self) -> None:
            self._route("GET")

        def do_HEAD(self) -> None:
            self._route("HEAD")

        def do_POST(self) -> None:
            self._route("POST")

        def do_DELETE(self) -> None:
            self._route("DELETE")

        def _route(self, method: str) -> None:
            parts = urlsplit(self.path)
            path = re.sub(r"^/v[0-9.]+", "", parts.path)
            query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            engine.calls.append((method, path))
            for verb, pattern, name in routes:
                match = re.fullmatch(pattern, path)
                if verb == method and match:
                    getattr(self, "_" + name)(query, raw, **match.groupdict())
                    return
            self._json(404, {"message": f"page not found: {method} {path}"})

        # -- endpoints ---------------------------------------------------------------------

        def _ping(self, query: dict, raw: bytes) -> None:
            self._send(200, b"OK", "text/plain")

        def _version(self, query: dict, raw: bytes) -> None:
            self._json(
                200,
                {
                    "Version": "27.0.0-emulated",
                    "ApiVersion": API_VERSION,
                    "MinAPIVersion": "1.24",
                    "Os": "linux",
                    "Arch": "amd64",
                },
            )

        def _create(self, query: dict, raw: bytes) -> None:
            status, body = engine.create(query.get("name"), json.loads(raw or b"{}"))
            self._json(status, body)

        def _list(self, query: dict, raw: bytes) -> None:
            filters = json.loads(query.get("filters") or "{}")
            filters = {k: v if isinstance(v, list) else list(v) for k, v in filters.items()}
            all_ = query.get("all") in ("1", "true", "True")
            self._json(200, engine.list(all_, filters))

        def _inspect(self, query: dict, raw: bytes, ref: str) -> None:
            container = self._container(ref)
            if container:
                self._json(200, container.inspect())

        def _start(self, query: dict, raw: bytes, ref: str) -> None:
            container = self._container(ref)
            if container:
                engine.start_container(container)
                self._send(204, b"")

        def _stop(self, query: dict, raw: bytes, ref: str) -> None:
            container = self._container(ref)
            if container:
                if container.status()[0] != "running":
                    self._send(304, b"")
                    return
                engine.stop_container(container, float(query.get("t") or 10))
                self._send(204, b"")

        def _kill(self, query: dict, raw: bytes, ref: str) -> None:
            container = self._container(ref)
            if container:
                engine._kill(container)
                self._send(204, b"")

        def _logs(self, query: dict, raw: bytes, ref: str) -> None:
            container = self._container(ref)
            if container:
                body = engine.logs(container, query.get("tail", "all"))
                self._send(200, body, "application/vnd.docker.multiplexed-stream")

        def _remove(self, query: dict, raw: bytes, ref: str) -> None:
            container = self._container(ref)
            if container:
                force = query.get("force") in ("1", "true", "True")
                status = engine.remove(container, force)
                if status == 409:
                    self._json(409, {"message": "container is running: stop it or force"})
                else:
                    self._send(204, b"")

        # -- plumbing ----------------------------------------------------------------------

        def _container(self, ref: str) -> FakeContainer | None:
            container = engine.find(ref)
            if container is None:
                self._json(404, {"message": f"No such container: {ref}"})
            return container

        def _json(self, status: int, body: Any) -> None:
            self._send(status, json.dumps(body).encode(), "application/json")

        def _send(self, status: int, body: bytes, content_type: str = "text/plain") -> None:
            self.send_response(status)
            if status not in (204, 304):
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
            self.send_header("Api-Version", API_VERSION)
            self.end_headers()
            if status not in (204, 304) and self.command != "HEAD":
                self.wfile.write(body)

    return Handler
