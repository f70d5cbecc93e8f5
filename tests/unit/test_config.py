"""``gateway/config.py``: one typed settings object from defaults < YAML < environment <
overrides, refused with a clear message when a value cannot be used."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.config import DEFAULT_PORT, ModelSpec, Settings, SettingsError, load_settings


def _yaml(tmp_path: Path, text: str) -> str:
    path = tmp_path / "gateway.yaml"
    path.write_text(text)
    return str(path)


def test_defaults() -> None:
    settings = load_settings(environ={})
    assert settings == Settings()
    assert settings.host == "127.0.0.1"
    assert settings.port == DEFAULT_PORT == 12434
    assert settings.routing == "affinity"
    assert settings.max_body_bytes == 8 * 1024 * 1024
    assert settings.backends == []
    assert settings.models == []


def test_does_not_read_the_process_environment_when_given_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("LLAMA_GATEWAY_PORT", "9999")
    assert load_settings(environ={}).port == DEFAULT_PORT
    assert load_settings().port == 9999


def test_precedence_defaults_yaml_env_overrides(tmp_path: Path) -> None:
    config = _yaml(
        tmp_path,
        "host: 0.0.0.0\nport: 1001\nqueue-size: 3\nprobe_interval: 7.5\nlog_level: debug\n",
    )
    environ = {"LLAMA_GATEWAY_PORT": "1002", "LLAMA_GATEWAY_QUEUE_SIZE": "4"}
    settings = load_settings({"port": 1003, "host": None}, config_file=config, environ=environ)
    assert settings.port == 1003  # override beats env and YAML
    assert settings.queue_size == 4  # env beats YAML
    assert settings.probe_interval == 7.5  # YAML beats the default
    assert settings.host == "0.0.0.0"  # a None override does not count
    assert settings.log_level == "debug"
    assert settings.queue_timeout == 30.0  # nobody set it


def test_config_file_from_the_environment(tmp_path: Path) -> None:
    config = _yaml(tmp_path, "port: 2222\n")
    settings = load_settings(environ={"LLAMA_GATEWAY_CONFIG": config})
    assert settings.port == 2222


def test_explicit_config_file_beats_the_environments(tmp_path: Path) -> None:
    env_file = tmp_path / "env.yaml"
    env_file.write_text("port: 1111\n")
    flag_file = _yaml(tmp_path, "port: 2222\n")
    environ = {"LLAMA_GATEWAY_CONFIG": str(env_file)}
    assert load_settings(config_file=flag_file, environ=environ).port == 2222


def test_env_lists() -> None:
    settings = load_settings(
        environ={"LLAMA_GATEWAY_BACKENDS": "http://a:8080, http://b:8080,,"},
    )
    assert settings.backends == ["http://a:8080", "http://b:8080"]


def test_env_maps() -> None:
    settings = load_settings(environ={"LLAMA_GATEWAY_ALIASES": "x=y, gpt-4o = smollm2,junk"})
    assert settings.aliases == {"x": "y", "gpt-4o": "smollm2"}


def test_env_scalars_from_strings() -> None:
    settings = load_settings(
        environ={
            "LLAMA_GATEWAY_PORT": "8080",
            "LLAMA_GATEWAY_QUEUE_TIMEOUT": "0.5",
            "LLAMA_GATEWAY_NO_AUTH": "true",
            "LLAMA_GATEWAY_REDIS_URL": "redis://r:6379/1",
            "LLAMA_GATEWAY_ROUTING": "round-robin",
        }
    )
    assert settings.port == 8080
    assert settings.queue_timeout == 0.5
    assert settings.no_auth is True
    assert settings.redis_url == "redis://r:6379/1"
    assert settings.routing == "round-robin"


@pytest.mark.parametrize(("raw", "value"), [("false", False), ("0", False), ("1", True)])
def test_env_bools(raw: str, value: bool) -> None:
    assert load_settings(environ={"LLAMA_GATEWAY_NO_AUTH": raw}).no_auth is value


def test_env_models() -> None:
    settings = load_settings(environ={"LLAMA_GATEWAY_MODELS": "/m/a.gguf,/m/b.gguf"})
    assert [spec.path for spec in settings.models] == ["/m/a.gguf", "/m/b.gguf"]
    assert [spec.model_id for spec in settings.models] == ["a", "b"]


def test_llama_server_bin() -> None:
    assert load_settings(environ={"LLAMA_SERVER_BIN": "/opt/ls"}).llama_server_bin == "/opt/ls"
    both = {"LLAMA_SERVER_BIN": "/opt/ls", "LLAMA_GATEWAY_LLAMA_SERVER_BIN": "/usr/ls"}
    assert load_settings(environ=both).llama_server_bin == "/usr/ls"
    assert load_settings(environ={}).llama_server_bin is None


def test_yaml_models_and_aliases(tmp_path: Path) -> None:
    config = _yaml(
        tmp_path,
        """
backends: [http://a:8080]
aliases:
  gpt-4o-mini: smollm2
models:
  - path: /models/SmolLM2-135M-Instruct.Q8_0.gguf
    name: smollm2
    aliases: [smol]
    parallel: 2
    ctx_size: 2048
  - path: /models/nomic-embed.gguf
    embeddings: true
    pooling: mean
""",
    )
    settings = load_settings(config_file=config, environ={})
    assert settings.backends == ["http://a:8080"]
    chat, embed = settings.models
    assert (chat.model_id, chat.parallel, chat.ctx_size) == ("smollm2", 2, 2048)
    assert (embed.model_id, embed.embeddings, embed.pooling) == ("nomic-embed", True, "mean")
    assert embed.parallel == 4
    assert embed.ctx_size == 4096
    assert settings.model_aliases == {"gpt-4o-mini": "smollm2", "smol": "smollm2"}


def test_empty_yaml_file_is_the_defaults(tmp_path: Path) -> None:
    assert load_settings(config_file=_yaml(tmp_path, ""), environ={}) == Settings()


def test_unknown_yaml_key_refused(tmp_path: Path) -> None:
    config = _yaml(tmp_path, "port: 1000\nqueue_sise: 3\n")
    with pytest.raises(SettingsError, match="queue_sise"):
        load_settings(config_file=config, environ={})


def test_unknown_model_key_refused(tmp_path: Path) -> None:
    config = _yaml(tmp_path, "models:\n  - path: /m/a.gguf\n    threads: 4\n")
    with pytest.raises(SettingsError, match="threads"):
        load_settings(config_file=config, environ={})


def test_missing_yaml_file(tmp_path: Path) -> None:
    missing = str(tmp_path / "nope.yaml")
    with pytest.raises(SettingsError, match="cannot read config file"):
        load_settings(config_file=missing, environ={})


def test_broken_yaml_file(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="cannot read config file"):
        load_settings(config_file=_yaml(tmp_path, "port: [1\n"), environ={})


def test_yaml_must_be_a_mapping(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="mapping"):
        load_settings(config_file=_yaml(tmp_path, "- port\n- 1\n"), environ={})


def test_yaml_with_a_non_string_key(tmp_path: Path) -> None:
    with pytest.raises(SettingsError):
        load_settings(config_file=_yaml(tmp_path, "port: 1000\n8080: true\n"), environ={})


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"port": 0}, "port must be 1..65535"),
        ({"port": 65536}, "port must be 1..65535"),
        ({"routing": "nope"}, "routing must be one of affinity, least-busy, round-robin"),
        ({"queue_timeout": 0}, "queue_timeout must be positive"),
        ({"probe_interval": -1}, "probe_interval must be positive"),
        ({"runner_start_timeout": 0}, "runner_start_timeout must be positive"),
        ({"queue_size": 0}, "queue_size must be at least 1"),
        ({"failure_threshold": 0}, "failure_threshold must be at least 1"),
        ({"max_body_bytes": 0}, "max_body_bytes must be at least 1"),
        ({"models": [{"path": "/m.gguf", "parallel": 0}]}, "need parallel >= 1"),
        ({"models": [{"path": "/m.gguf", "parallel": 8, "ctx_size": 4}]}, "ctx_size >= parallel"),
        ({"redis_url": "memory://?lua=lua54"}, r"memory://\?lua= is one of .*lua51.*'lua54'"),
        ({"redis_url": "memory://?luajit=1"}, "memory:// takes no host, path or option but"),
        ({"redis_url": "memory://somewhere"}, "memory:// takes no host, path or option but"),
    ],
)
def test_invalid_values(overrides: dict, message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        load_settings(overrides, environ={})


def test_invalid_type_from_the_environment() -> None:
    with pytest.raises(SettingsError, match=r"invalid setting: .*\$\.port"):
        load_settings(environ={"LLAMA_GATEWAY_PORT": "eighty"})


def test_invalid_value_from_the_environment() -> None:
    with pytest.raises(SettingsError, match="queue_timeout must be positive"):
        load_settings(environ={"LLAMA_GATEWAY_QUEUE_TIMEOUT": "0"})


@pytest.mark.parametrize(
    ("spec", "model_id"),
    [
        (ModelSpec(path="/models/SmolLM2-135M.Q8_0.gguf"), "SmolLM2-135M.Q8_0"),
        (ModelSpec(path="relative/model"), "model"),
        (ModelSpec(path="/models/x.gguf", name="chat"), "chat"),
    ],
)
def test_model_id(spec: ModelSpec, model_id: str) -> None:
    assert spec.model_id == model_id


def test_model_aliases_merge_configured_and_model_aliases() -> None:
    settings = Settings(
        aliases={"a": "x", "b": "y"},
        models=[
            ModelSpec(path="/m/one.gguf", aliases=["b", "c"]),
            ModelSpec(path="/m/two.gguf", name="second", aliases=["d"]),
        ],
    )
    assert settings.model_aliases == {"a": "x", "b": "one", "c": "one", "d": "second"}
    assert settings.aliases == {"a": "x", "b": "y"}  # the configured map is not changed
