"""``llama-gateway keys …`` in a subprocess against the real redis-server (the CLI refuses
``memory://``, which would vanish with the process)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.redis_server import RedisServer

ROOT = Path(__file__).resolve().parents[2]
# The command line as installed: ``llama-gateway keys …``.
ENTRY = "import sys; from gateway.cli import main; sys.exit(main())"


class Cli:
    def __init__(self, url: str) -> None:
        self.env = {**os.environ, "LLAMA_GATEWAY_REDIS_URL": url}
        self.env.pop("LLAMA_GATEWAY_CONFIG", None)

    def __call__(
        self, *args: str, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-c", ENTRY, "keys", *args],
            capture_output=True,
            text=True,
            cwd=ROOT,
            env=env or self.env,
            timeout=60,
        )

    def json(self, *args: str) -> object:
        done = self(*args, "--json")
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)


@pytest.fixture
def cli(redis_server: RedisServer) -> Cli:
    import redis

    with redis.Redis.from_url(redis_server.url) as client:
        client.flushdb()
    return Cli(redis_server.url)


def test_key_lifecycle(cli: Cli) -> None:
    created = cli.json(
        "create", "--name", "alice", "--rpm", "60", "--tpm", "1000", "--max-concurrency", "2",
        "--daily-tokens", "5000", "--monthly-tokens", "90000", "--models", "smollm2, qwen",
        "--weight", "2.5", "--priority", "3", "--expires-in", "30d",
    )  # fmt: skip
    assert isinstance(created, dict)
    key_id, secret = created["id"], created["key"]
    assert secret.startswith("sk-lg-")
    assert created["models"] == ["smollm2", "qwen"]
    assert (created["rpm"], created["tpm"], created["max_concurrency"]) == (60, 1000, 2)
    assert (created["daily_tokens"], created["monthly_tokens"]) == (5000, 90000)
    assert (created["weight"], created["priority"]) == (2.5, 3)
    assert abs(created["expires_at"] - (time.time() + 30 * 86400)) < 600

    listed = cli.json("list")
    assert [k["id"] for k in listed] == [key_id]
    assert secret not in json.dumps(listed)

    table = cli("list")
    assert table.returncode == 0
    assert table.stdout.splitlines()[0].split()[:3] == ["ID", "NAME", "STATE"]
    assert key_id in table.stdout and "alice" in table.stdout and "active" in table.stdout

    updated = cli.json("update", key_id, "--rpm", "none", "--tpm", "50", "--disable")
    assert (updated["rpm"], updated["tpm"], updated["disabled"]) == (None, 50, True)
    shown = cli("show", key_id)
    assert shown.returncode == 0 and "disabled" in shown.stdout
    assert cli.json("update", key_id, "--enable", "--expires-in", "never")["expires_at"] is None

    revoked = cli.json("revoke", key_id)
    assert revoked["revoked_at"] is not None
    assert "revoked" in cli("show", key_id).stdout


def test_create_prints_the_secret_once_in_the_table(cli: Cli) -> None:
    done = cli("create", "--name", "bob")
    assert done.returncode == 0
    secret = next(word for word in done.stdout.split() if word.startswith("sk-lg-"))
    assert "shown once" in done.stdout
    key_id = next(line.split()[1] for line in done.stdout.splitlines() if line.startswith("id "))
    assert secret not in cli("show", key_id).stdout


def test_exit_codes(cli: Cli) -> None:
    missing = cli("show", "key_nope")
    assert missing.returncode == 1 and "key_nope" in missing.stderr
    assert cli("revoke", "key_nope").returncode == 1
    assert cli("update", "key_nope", "--rpm", "5").returncode == 1

    assert cli("create", "--name", "x", "--rpm", "0").returncode == 2  # argparse: at least 1
    assert cli("create", "--name", "x", "--expires-in", "soon").returncode == 2
    assert cli("create", "--name", "x", "--weight", "-1").returncode == 2  # the store refuses
    key_id = cli.json("create", "--name", "y")["id"]
    nothing = cli("update", key_id)
    assert nothing.returncode == 2 and "Nothing to change" in nothing.stderr


def test_memory_store_is_refused(cli: Cli) -> None:
    env = {**cli.env, "LLAMA_GATEWAY_REDIS_URL": "memory://"}
    done = cli("list", env=env)
    assert done.returncode == 2
    assert "memory://" in done.stderr and "--redis-url" in done.stderr
    explicit = cli("list", "--redis-url", "memory://")
    assert explicit.returncode == 2


def test_unreachable_store(cli: Cli) -> None:
    done = cli("list", "--redis-url", "redis://127.0.0.1:1/0")
    assert done.returncode == 1
    assert "unreachable" in done.stderr
    assert "Traceback" not in done.stderr
