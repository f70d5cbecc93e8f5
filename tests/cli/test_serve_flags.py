"""``gateway/cli/serve.py``: flags become settings. No server is started: the parser is built the
way ``main`` builds it, and ``main`` is only called where it refuses before serving."""

from __future__ import annotations

import argparse

import pytest

from gateway.cli import main
from gateway.cli.serve import add_parser as _serve_parser
from gateway.cli.serve import model_arg as _model_arg
from gateway.cli.serve import overrides as _overrides
from gateway.config import SettingsError, load_settings


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """``main`` reads the process environment: keep the caller's settings out of it."""
    import os

    for name in list(os.environ):
        if name.startswith("LLAMA_GATEWAY_") or name == "LLAMA_SERVER_BIN":
            monkeypatch.delenv(name)


def _parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="llama-gateway")
    _serve_parser(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(["serve", *argv])


@pytest.mark.parametrize(
    ("arg", "spec"),
    [
        ("/models/smol.gguf", {"path": "/models/smol.gguf"}),
        ("smol.gguf", {"path": "smol.gguf"}),
        ("smol=/models/smol.gguf", {"name": "smol", "path": "/models/smol.gguf"}),
        ("chat=model.gguf", {"name": "chat", "path": "model.gguf"}),
        ("/models/a=b.gguf", {"path": "/models/a=b.gguf"}),
        ("dir/x=y.gguf", {"path": "dir/x=y.gguf"}),
        ("=smol.gguf", {"path": "=smol.gguf"}),
    ],
)
def test_model_arg(arg: str, spec: dict[str, str]) -> None:
    assert _model_arg(arg) == spec


def test_no_flags_no_overrides() -> None:
    assert _overrides(_parse()) == {}


def test_flags_become_overrides() -> None:
    args = _parse(
        "--host",
        "0.0.0.0",
        "--port",
        "8000",
        "--backend",
        "http://a:1",
        "--backend",
        "http://b:1",
        "--routing",
        "round-robin",
        "--queue-timeout",
        "1.5",
        "--no-auth",
        "--llama-server-bin",
        "/opt/llama-server",
        "--config",
        "gateway.yaml",
    )
    assert _overrides(args) == {
        "host": "0.0.0.0",
        "port": 8000,
        "backends": ["http://a:1", "http://b:1"],
        "routing": "round-robin",
        "queue_timeout": 1.5,
        "no_auth": True,
        "llama_server_bin": "/opt/llama-server",
    }


def test_models_with_parallel_and_ctx_size() -> None:
    argv = "--model smol=/m/smol.gguf --model /m/other.gguf --parallel 2 --ctx-size 1024"
    args = _parse(*argv.split())
    pinned = {"keep_alive": -1, "preload": True}  # a --model loads at start and stays
    assert _overrides(args)["models"] == [
        {"name": "smol", "path": "/m/smol.gguf", "parallel": 2, "ctx_size": 1024, **pinned},
        {"path": "/m/other.gguf", "parallel": 2, "ctx_size": 1024, **pinned},
    ]
    settings = load_settings(_overrides(args), environ={})
    assert [(m.model_id, m.parallel, m.ctx_size) for m in settings.models] == [
        ("smol", 2, 1024),
        ("other", 2, 1024),
    ]


def test_models_without_sizes_take_the_defaults() -> None:
    overrides = _overrides(_parse("--model", "/m/smol.gguf"))
    assert overrides == {"models": [{"path": "/m/smol.gguf", "keep_alive": -1, "preload": True}]}
    (spec,) = load_settings(overrides, environ={}).models
    assert (spec.parallel, spec.ctx_size) == (4, 4096)


def test_parallel_zero_is_refused_not_ignored() -> None:
    overrides = _overrides(_parse("--model", "/m/smol.gguf", "--parallel", "0"))
    with pytest.raises(SettingsError, match="parallel"):
        load_settings(overrides, environ={})


def test_flags_beat_the_environment() -> None:
    overrides = _overrides(_parse("--port", "8000"))
    settings = load_settings(overrides, environ={"LLAMA_GATEWAY_PORT": "9000"})
    assert settings.port == 8000


def test_unknown_routing_refused_by_the_parser(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        _parse("--routing", "nope")
    assert caught.value.code == 2
    assert "--routing" in capsys.readouterr().err


def test_main_requires_a_command(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        main([])
    assert caught.value.code == 2
    assert "command" in capsys.readouterr().err


def test_main_reports_invalid_settings(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--port", "0", "--backend", "http://a:1"]) == 2
    assert "llama-gateway: port must be 1..65535" in capsys.readouterr().err


def test_main_reports_invalid_settings_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("LLAMA_GATEWAY_QUEUE_SIZE", "0")
    assert main(["serve", "--backend", "http://a:1"]) == 2
    assert "queue_size must be at least 1" in capsys.readouterr().err


def test_main_with_nothing_to_serve(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve"]) == 2
    assert "nothing to serve" in capsys.readouterr().err


def test_security_flags_reach_the_settings() -> None:
    args = _parse(
        "--metrics-token",
        "scrape-me",
        "--cors-origin",
        "https://a.example",
        "--cors-origin",
        "https://b.example",
    )
    settings = load_settings(_overrides(args), environ={})
    assert settings.metrics_token == "scrape-me"
    assert settings.cors_origins == ["https://a.example", "https://b.example"]
