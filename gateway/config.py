"""The gateway's settings: one typed object, built once from defaults, a YAML file, the
environment (``LLAMA_GATEWAY_*``) and command-line flags — later sources win.

Nothing below the CLI reads the environment; everything receives a :class:`Settings`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from enum import StrEnum
from pathlib import Path
from typing import Any

import msgspec
import yaml

from gateway.telemetry.tracing import otlp_traces_endpoint
from gateway.units import parse_duration, parse_size

ENV_PREFIX = "LLAMA_GATEWAY_"
DEFAULT_PORT = 12434


class RoutingPolicy(StrEnum):
    """How a backend is chosen (``gateway/routing/policies.py`` has one class each)."""

    AFFINITY = "affinity"
    LEAST_BUSY = "least-busy"
    ROUND_ROBIN = "round-robin"


ROUTING_POLICIES = tuple(RoutingPolicy)
RUNNER_DRIVERS = ("process", "docker")
LOG_FORMATS = ("auto", "text", "json")


class ModelSpec(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A declared model: the scheduler starts ``llama-server`` runners for it on demand
    (reference and examples: ``docs/runners.md``)."""

    #: The id clients use; defaults to the file name without ``.gguf`` (or the ``hf`` repo).
    name: str | None = None
    aliases: list[str] = []
    #: The GGUF file — or ``hf``: a Hugging Face ``user/repo:quant`` that ``llama-server -hf``
    #: downloads (through ``hf_endpoint`` / ``$HF_ENDPOINT`` where set). Exactly one of the two.
    path: str | None = None
    hf: str | None = None
    #: Total context of one runner (``-c``), shared by its ``parallel`` slots (``-np``).
    ctx_size: int = 4096
    parallel: int = 4
    #: KV cache element types (``-ctk`` / ``-ctv``): f16, q8_0, q4_0, …
    cache_type_k: str = "f16"
    cache_type_v: str = "f16"
    #: Runners to start when the model loads; one per GPU before two share one.
    replicas: int = 1
    embeddings: bool = False
    #: ``--pooling`` for embeddings: none, mean, cls, last, rank.
    pooling: str | None = None
    #: Multimodal projector file (``--mmproj``) for vision models.
    mmproj: str | None = None
    #: ``--chat-template``: a built-in template name or a Jinja template.
    chat_template: str | None = None
    #: Further ``llama-server`` flags, passed through as given.
    extra_args: list[str] = []
    #: How long an idle runner stays loaded: ``30s``, ``5m``, ``1h``; ``-1`` forever; ``0``
    #: unload right after the request. A request's own ``keep_alive`` overrides it.
    keep_alive: str | float = "5m"
    #: Memory one runner takes (``6GiB``), instead of the GGUF arithmetic — for ``hf`` models,
    #: whose header cannot be read before the download.
    memory: str | int | None = None
    #: Load at start instead of on the first request (``--model`` models are).
    preload: bool = False

    def __post_init__(self) -> None:
        if (self.path is None) == (self.hf is None):
            raise ValueError("a model needs exactly one of path or hf")
        parse_duration(self.keep_alive)
        if self.memory is not None:
            parse_size(self.memory)

    @property
    def model_id(self) -> str:
        if self.name:
            return self.name
        if self.path:
            return Path(self.path).name.removesuffix(".gguf")
        return str(self.hf).split(":", 1)[0].rsplit("/", 1)[-1].removesuffix("-GGUF")

    @property
    def keep_alive_seconds(self) -> float:
        """Seconds an idle runner stays; :data:`gateway.units.FOREVER` for ``-1``."""
        return parse_duration(self.keep_alive)


class GpuSpec(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A GPU runners may be placed on."""

    #: The device id as CUDA and Docker know it (``0``, ``1``, or a UUID).
    id: str
    #: Its memory: ``24GiB``, ``80GB``, or bytes.
    memory: str | int

    def __post_init__(self) -> None:
        parse_size(self.memory)

    @property
    def memory_bytes(self) -> int:
        return parse_size(self.memory)


class DockerSettings(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """The ``docker`` runner driver and the discovery of labelled containers."""

    #: Engine address (``unix:///var/run/docker.sock``, ``tcp://host:2375``); ``None``: the
    #: Docker SDK's own defaults (``$DOCKER_HOST``).
    host: str | None = None
    image: str = "ghcr.io/ggml-org/llama.cpp:server-cuda"
    #: Host folder holding the models, mounted read-only at ``/models`` in each container.
    models_dir: str | None = None
    #: Network to attach runners to; then the gateway reaches them by container name (use it
    #: when the gateway runs in a container). ``None``: a port published on 127.0.0.1.
    network: str | None = None
    #: Adopt running containers labelled ``llama-gateway.gateway=<gateway_name>`` (compose).
    discover: bool = False
    discover_interval: float = 10.0


class KubernetesSettings(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """``llama-server`` pods behind a headless Service, found through DNS."""

    #: The Service's DNS name, e.g. ``llama-server.llm.svc.cluster.local``.
    service: str
    #: Named port for the SRV lookup (``_http._tcp.<service>``); A records use ``port``.
    port_name: str = "http"
    port: int = 8080
    interval: float = 10.0
    #: DNS servers to ask (``10.96.0.10`` or ``127.0.0.1:5353``); empty: the system's.
    nameservers: list[str] = []


class Settings(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    #: URLs of running ``llama-server`` processes to route to.
    backends: list[str] = []
    #: GGUF files to start local runners for (the embedded default).
    models: list[ModelSpec] = []
    #: Extra model names: alias -> the id a backend reports.
    aliases: dict[str, str] = {}

    #: ``llama-server`` binary; ``None`` searches ``PATH``, then the cache (see
    #: ``gateway/runners/binary.py``). ``$LLAMA_SERVER_BIN`` sets it too.
    llama_server_bin: str | None = None
    #: Where fetched things live: a llama-server (``make run`` puts one in ``bin/`` or
    #: ``wheel/``) and, unless ``models_dir`` says otherwise, pulled models in ``models/``.
    cache_dir: str = "~/.cache/llama-gateway"
    #: Where ``llama-gateway pull`` and ``POST /api/pull`` put models, and where a model named
    #: by NAME instead of a path (``--model NAME``, ``path: NAME``) is found; ``None``:
    #: ``cache_dir/models``.
    models_dir: str | None = None
    #: ``Authorization: Bearer`` key the gateway sends to backends (their ``--api-key``).
    backend_api_key: str | None = None
    #: Seconds a started runner may take until ``/health`` answers 200.
    runner_start_timeout: float = 120.0
    #: How the scheduler runs the declared models: ``process`` (local) or ``docker``.
    runner_driver: str = "process"
    #: GPUs runners are placed on; empty: those NVML finds, else none (CPU placement).
    gpus: list[GpuSpec] = []
    #: Memory kept per runner beyond weights and KV cache (compute buffers, CUDA context).
    runner_overhead: str | int = "512MiB"
    #: Without GPUs: the host memory all runners together may take; ``None``: no limit.
    host_memory: str | int | None = None
    #: Seconds a loaded runner may fail its probes before it is restarted.
    runner_unhealthy_timeout: float = 15.0
    #: Seconds in-flight requests of a draining runner get to finish before it stops.
    drain_timeout: float = 30.0
    #: Hugging Face mirror for ``hf`` models (else ``$HF_ENDPOINT``).
    hf_endpoint: str | None = None
    #: Token for private or gated Hugging Face repositories, used by pulls (``$HF_TOKEN``).
    hf_token: str | None = None
    #: This gateway's name: the ``llama-gateway.gateway`` label of its containers.
    gateway_name: str = "llama-gateway"
    docker: DockerSettings = msgspec.field(default_factory=DockerSettings)
    kubernetes: KubernetesSettings | None = None

    #: The store: ``memory://`` (one process), ``redis://[:password@]host:port/db`` (or
    #: ``rediss://``, ``unix://``), or ``redis+sentinel://[:password@]host1:port1,host2:port2/
    #: service_name[/db]`` for a Redis watched by Sentinel (a failover is followed).
    redis_url: str = "memory://"
    admin_token: str | None = None
    no_auth: bool = False
    #: Bearer token ``/metrics`` requires; ``None``: open to whoever reaches the port.
    metrics_token: str | None = None
    #: Origins browsers may call the API from (CORS), e.g. ``https://chat.example.com``;
    #: empty: no CORS headers, browsers on other origins are refused (the default).
    cors_origins: list[str] = []
    #: Longest request target (path and query) accepted, in bytes; longer: 414.
    max_url_bytes: int = 8 * 1024

    #: Seconds between probes of each backend's ``/health``, ``/props`` and ``/slots``.
    probe_interval: float = 2.0
    #: Consecutive failed requests or probes after which a backend leaves rotation.
    failure_threshold: int = 3

    #: How a request picks among the backends of its model: ``affinity`` (the backend that
    #: holds the longest prefix of the prompt in its cache, load permitting), ``least-busy``
    #: or ``round-robin``. See ``docs/routing.md``.
    routing: str = "affinity"
    #: Affinity: pin a request to the backend's slot holding its prefix (``id_slot``) when
    #: that slot is idle, instead of letting llama-server pick its most similar slot.
    affinity_pin_slots: bool = False
    #: Affinity: seconds a recorded prefix is remembered after its last use.
    affinity_ttl: float = 1800.0
    #: Affinity: prefix entries remembered per model; the oldest are evicted beyond it.
    affinity_max_entries: int = 200_000

    #: Requests that may wait for a slot, per model; more are refused with 429.
    queue_size: int = 256
    #: Seconds a request may wait for a slot before it is refused with 503.
    queue_timeout: float = 30.0
    #: Seconds a slot lease lives unless renewed (running requests renew it every third):
    #: how long the slots of a gateway replica that died stay taken.
    lease_ttl: float = 15.0
    #: Largest request body accepted, in bytes.
    max_body_bytes: int = 8 * 1024 * 1024
    #: Seconds a client has to send a request's line and headers; then the connection is
    #: closed (a slowloris client holds nothing for long).
    header_timeout: float = 10.0
    #: Seconds an idle keep-alive connection stays open between requests.
    keep_alive_timeout: float = 5.0
    #: Largest size of a request's headers together, in bytes (beyond: 431).
    max_header_bytes: int = 32 * 1024
    #: Most header lines one request may carry (beyond: 431).
    max_header_count: int = 100
    #: Open connections beyond which new requests are refused with 503; ``None``: no limit.
    max_connections: int | None = None

    upstream_connect_timeout: float = 5.0
    #: Longest silence from a backend mid-response, in seconds.
    upstream_read_timeout: float = 600.0

    log_level: str = "info"
    #: ``auto``: readable lines on a terminal, JSON lines otherwise; or ``text`` / ``json``.
    log_format: str = "auto"

    #: OTLP/HTTP endpoint for traces; ``None`` leaves tracing off. From the standard
    #: ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` / ``OTEL_EXPORTER_OTLP_ENDPOINT`` variables.
    otlp_traces_endpoint: str | None = None
    #: ``service.name`` of the traces (``OTEL_SERVICE_NAME``).
    otel_service_name: str = "llama-gateway"

    @property
    def model_aliases(self) -> dict[str, str]:
        """Every alias, the configured ones and those declared on models."""
        found = dict(self.aliases)
        for spec in self.models:
            for alias in spec.aliases:
                found[alias] = spec.model_id
        return found


class SettingsError(ValueError):
    """A setting has a value the gateway cannot use."""


_LIST_FIELDS = {"backends", "cors_origins"}
_STRUCT_FIELDS = {"models", "gpus", "docker", "kubernetes"}
_MAP_FIELDS = {"aliases"}


def _from_env(environ: Mapping[str, str]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for field in msgspec.structs.fields(Settings):
        raw = environ.get(ENV_PREFIX + field.name.upper())
        if raw is None or field.name in _STRUCT_FIELDS:
            continue
        if field.name in _LIST_FIELDS:
            values[field.name] = [item.strip() for item in raw.split(",") if item.strip()]
        elif field.name in _MAP_FIELDS:
            pairs = (item.split("=", 1) for item in raw.split(",") if "=" in item)
            values[field.name] = {alias.strip(): target.strip() for alias, target in pairs}
        else:
            values[field.name] = raw
    if "LLAMA_SERVER_BIN" in environ and "llama_server_bin" not in values:
        values["llama_server_bin"] = environ["LLAMA_SERVER_BIN"]
    if "HF_ENDPOINT" in environ and "hf_endpoint" not in values:
        values["hf_endpoint"] = environ["HF_ENDPOINT"]
    if "HF_TOKEN" in environ and "hf_token" not in values:
        values["hf_token"] = environ["HF_TOKEN"]
    if otlp_traces_endpoint(environ):
        values["otlp_traces_endpoint"] = otlp_traces_endpoint(environ)
    if environ.get("OTEL_SERVICE_NAME"):
        values["otel_service_name"] = environ["OTEL_SERVICE_NAME"]
    if "LLAMA_GATEWAY_MODELS" in environ:
        values["models"] = [
            {"path": p, "keep_alive": -1, "preload": True}
            for p in environ["LLAMA_GATEWAY_MODELS"].split(",")
            if p
        ]
    return values


def _from_yaml(path: str) -> dict[str, Any]:
    try:
        loaded = yaml.safe_load(Path(path).read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise SettingsError(f"cannot read config file {path}: {exc}") from exc
    if not isinstance(loaded, dict):
        raise SettingsError(f"config file {path} must hold a mapping at the top level")
    if not all(isinstance(key, str) for key in loaded):
        raise SettingsError(f"config file {path}: every setting name must be a string")
    return {key.replace("-", "_"): value for key, value in loaded.items()}


def load_settings(
    overrides: Mapping[str, Any] | None = None,
    *,
    config_file: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Merge defaults < YAML file < environment < ``overrides`` into one :class:`Settings`."""
    environ = os.environ if environ is None else environ
    config_file = config_file or environ.get(ENV_PREFIX + "CONFIG")
    merged: dict[str, Any] = {}
    if config_file:
        merged.update(_from_yaml(config_file))
    merged.update(_from_env(environ))
    merged.update({k: v for k, v in (overrides or {}).items() if v is not None})
    try:
        # strict=False turns the environment's strings into ints, floats and bools.
        settings = msgspec.convert(merged, Settings, strict=False)
    except msgspec.ValidationError as exc:
        raise SettingsError(f"invalid setting: {exc}") from exc
    _check(settings)
    return settings


def _check(settings: Settings) -> None:
    if not 0 < settings.port < 65536:
        raise SettingsError(f"port must be 1..65535, not {settings.port}")
    for name in (
        "queue_size",
        "failure_threshold",
        "max_body_bytes",
        "affinity_max_entries",
        "max_header_bytes",
        "max_header_count",
        "max_url_bytes",
    ):
        if getattr(settings, name) < 1:
            raise SettingsError(f"{name} must be at least 1")
    for name in (
        "queue_timeout",
        "probe_interval",
        "runner_start_timeout",
        "lease_ttl",
        "affinity_ttl",
        "header_timeout",
        "keep_alive_timeout",
    ):
        if getattr(settings, name) <= 0:
            raise SettingsError(f"{name} must be positive")
    if settings.max_connections is not None and settings.max_connections < 1:
        raise SettingsError("max_connections must be at least 1")
    if settings.log_format not in LOG_FORMATS:
        raise SettingsError(f"log_format must be one of {', '.join(LOG_FORMATS)}")
    from gateway.store.connection import check_url

    try:
        check_url(settings.redis_url)
    except ValueError as exc:
        raise SettingsError(f"redis_url: {exc}") from None
    if settings.routing not in ROUTING_POLICIES:
        raise SettingsError(f"routing must be one of {', '.join(ROUTING_POLICIES)}")
    for spec in settings.models:
        if spec.parallel < 1 or spec.ctx_size < spec.parallel:
            raise SettingsError(
                f"model {spec.model_id}: need parallel >= 1 and ctx_size >= parallel"
            )
        if spec.replicas < 1:
            raise SettingsError(f"model {spec.model_id}: replicas must be at least 1")
    ids = [spec.model_id for spec in settings.models]
    if len(set(ids)) != len(ids):
        raise SettingsError(f"two declared models have the same name: {sorted(ids)}")
    if settings.runner_driver not in RUNNER_DRIVERS:
        raise SettingsError(f"runner_driver must be one of {', '.join(RUNNER_DRIVERS)}")
    try:
        parse_size(settings.runner_overhead)
        if settings.host_memory is not None:
            parse_size(settings.host_memory)
    except ValueError as exc:
        raise SettingsError(str(exc)) from None
