"""Declared models: the smallest config stays small; durations and sizes parse once."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import pytest

from gateway.cli.serve import overrides as _overrides
from gateway.config import SettingsError, load_settings
from gateway.errors import InvalidRequest
from gateway.requests import Endpoint, parse
from gateway.runners.args import server_args
from gateway.units import FOREVER, parse_duration, parse_size


def test_the_smallest_config(tmp_path: Path) -> None:
    config = tmp_path / "gateway.yaml"
    config.write_text(
        "models:\n"
        "  - name: smollm2\n"
        "    path: /models/SmolLM2-135M-Instruct.Q4_1.gguf\n"
        "    ctx_size: 4096\n"
        "    parallel: 4\n"
        "    keep_alive: 5m\n"
    )
    (spec,) = load_settings(config_file=str(config), environ={}).models
    assert spec.model_id == "smollm2"
    assert spec.keep_alive_seconds == 300
    assert (spec.replicas, spec.cache_type_k, spec.preload) == (1, "f16", False)


def test_every_model_field(tmp_path: Path) -> None:
    config = tmp_path / "gateway.yaml"
    config.write_text(
        "gpus: [{id: '0', memory: 24GiB}, {id: '1', memory: 24GB}]\n"
        "hf_endpoint: https://mirror.example\n"
        "models:\n"
        "  - hf: bartowski/Qwen2.5-7B-Instruct-GGUF:Q4_K_M\n"
        "    aliases: [qwen]\n"
        "    ctx_size: 16384\n"
        "    parallel: 8\n"
        "    cache_type_k: q8_0\n"
        "    cache_type_v: q8_0\n"
        "    replicas: 2\n"
        "    chat_template: chatml\n"
        "    extra_args: ['-fa', 'on']\n"
        "    keep_alive: -1\n"
        "    memory: 7GiB\n"
        "  - name: embed\n"
        "    path: /models/embed.gguf\n"
        "    embeddings: true\n"
        "    pooling: mean\n"
        "    keep_alive: 0\n"
    )
    settings = load_settings(config_file=str(config), environ={})
    qwen, embed = settings.models
    assert qwen.model_id == "Qwen2.5-7B-Instruct"
    assert settings.model_aliases == {"qwen": "Qwen2.5-7B-Instruct"}
    assert qwen.keep_alive_seconds == FOREVER and embed.keep_alive_seconds == 0
    assert [g.memory_bytes for g in settings.gpus] == [24 * 1024**3, 24 * 10**9]
    args = server_args(qwen, host=None, port=None, api_key=None)
    assert args[:2] == ["-hf", "bartowski/Qwen2.5-7B-Instruct-GGUF:Q4_K_M"]
    assert ["-ctk", "q8_0"] == args[args.index("-ctk") : args.index("-ctk") + 2]
    assert args[-2:] == ["-fa", "on"] and "--chat-template" in args
    embed_args = server_args(embed, host="127.0.0.1", port=8080, api_key="k")
    assert "--embeddings" in embed_args and "mean" in embed_args and "k" in embed_args


@pytest.mark.parametrize(
    "model",
    [
        "{name: x}",  # no source
        "{name: x, path: /a.gguf, hf: a/b:Q4}",  # two sources
        "{path: /a.gguf, keep_alive: soon}",
        "{path: /a.gguf, memory: lots}",
    ],
)
def test_bad_models_are_refused(tmp_path: Path, model: str) -> None:
    config = tmp_path / "gateway.yaml"
    config.write_text(f"models: [{model}]\n")
    with pytest.raises(SettingsError):
        load_settings(config_file=str(config), environ={})


def test_model_flag_pins_and_preloads() -> None:
    args = argparse.Namespace(
        command="serve", config=None, models=["smol=/m.gguf"], parallel=None, ctx_size=None
    )
    (spec,) = load_settings(_overrides(args), environ={}).models
    assert spec.model_id == "smol" and spec.preload and spec.keep_alive_seconds == FOREVER


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30s", 30), ("5m", 300), ("1h", 3600), ("1.5h", 5400), ("0", 0), (0, 0), (45, 45)],
)
def test_durations(text: str | int, seconds: float) -> None:
    assert parse_duration(text) == seconds


def test_negative_durations_are_forever() -> None:
    assert parse_duration(-1) == math.inf == parse_duration("-1") == parse_duration("-5m")


def test_sizes() -> None:
    assert parse_size("512MiB") == 512 * 1024**2
    assert parse_size("80GB") == 80 * 10**9
    assert parse_size("1.5GiB") == int(1.5 * 1024**3)
    assert parse_size(1000) == 1000
    with pytest.raises(ValueError):
        parse_size("big")


def test_request_keep_alive_is_read_and_not_forwarded() -> None:
    raw = b'{"model":"m","messages":[{"role":"user","content":"hi"}],"keep_alive":"10m"}'
    request = parse(Endpoint.CHAT, raw)
    assert request.keep_alive == 600
    assert b"keep_alive" not in request.upstream_body()
    assert parse(Endpoint.CHAT, raw.replace(b'"10m"', b"-1")).keep_alive == math.inf
    plain = parse(Endpoint.CHAT, b'{"model":"m","messages":[{"role":"user","content":"x"}]}')
    assert plain.keep_alive is None
    with pytest.raises(InvalidRequest) as caught:
        parse(Endpoint.CHAT, raw.replace(b'"10m"', b'"later"'))
    assert caught.value.param == "keep_alive"
