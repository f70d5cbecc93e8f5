"""One source of truth: the ports, probe paths, metric paths and LLAMA_GATEWAY_* names in the
Dockerfiles, the compose project, the Prometheus config and the Helm chart agree with the
gateway itself (gateway.config.Settings and the routes it serves)."""

from __future__ import annotations

import re
import tomllib
from urllib.parse import urlsplit

import msgspec
import pytest
import yaml

from gateway.api.health import ROUTES
from gateway.config import DEFAULT_PORT, ENV_PREFIX, ROUTING_POLICIES, Settings, load_settings

from .conftest import DEPLOY, DOCKERFILES, NAMESPACE, ROOT, Rendered, read_env_file
from .test_dockerfiles import instructions, stages

RUNNER_PORT = 8080  # llama-server's default and the runner images' LLAMA_ARG_PORT
PROMETHEUS = DEPLOY / "prometheus" / "prometheus.yml"


@pytest.fixture(scope="module")
def gateway_paths() -> set[str]:
    return {path for handler in ROUTES for path in handler.paths}


@pytest.fixture(scope="module")
def setting_names() -> set[str]:
    names = {ENV_PREFIX + field.name.upper() for field in msgspec.structs.fields(Settings)}
    return names | {ENV_PREFIX + "CONFIG"}  # the YAML file, read by load_settings itself


def gateway_env_names(env: dict[str, str] | list[str]) -> set[str]:
    return {name for name in env if name.startswith(ENV_PREFIX)}


def test_the_gateway_serves_the_paths_the_deploy_files_probe(gateway_paths) -> None:
    assert {"/health", "/ready", "/metrics"} <= gateway_paths


# ---- Dockerfiles -----------------------------------------------------------------------------


def env_of(stage: list[str]) -> dict[str, str]:
    found: dict[str, str] = {}
    for line in instructions(stage, "ENV"):
        found.update(re.findall(r"(\w+)=(\S+)", line))
    return found


@pytest.mark.parametrize(("name", "target"), [("cpu", "gateway"), ("cuda", "all-in-one")])
def test_gateway_images_agree_with_settings(name: str, target: str, setting_names) -> None:
    stage = stages(DOCKERFILES[name])[target]
    env = env_of(stage)
    assert gateway_env_names(env) <= setting_names
    assert env["LLAMA_GATEWAY_HOST"] == "0.0.0.0"
    assert int(env["LLAMA_GATEWAY_PORT"]) == DEFAULT_PORT
    assert instructions(stage, "EXPOSE") == [str(DEFAULT_PORT)]
    (check,) = instructions(stage, "HEALTHCHECK")
    # The check reads the configured port, falling back to the same default as the gateway.
    assert "LLAMA_GATEWAY_PORT" in check and f"'{DEFAULT_PORT}'" in check and "/health" in check
    assert instructions(stage, "ENTRYPOINT") == ['["llama-gateway"]']
    assert instructions(stage, "CMD") == ['["serve"]']
    settings = load_settings(environ={k: v for k, v in env.items() if k.startswith("LLAMA_")})
    assert settings.port == DEFAULT_PORT


def test_the_entrypoint_is_the_packages_command() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["scripts"]["llama-gateway"] == "gateway.cli:main"


def test_all_in_one_finds_the_runner_binary() -> None:
    stage = stages(DOCKERFILES["cuda"])["all-in-one"]
    env = env_of(stage)
    assert env["LLAMA_SERVER_BIN"] == "/app/llama-server"
    assert "cp build/bin/llama-server /out/" in DOCKERFILES["cuda"].read_text()
    assert load_settings(environ=env).llama_server_bin == "/app/llama-server"


@pytest.mark.parametrize(("name", "target"), [("cpu", "runner-cpu"), ("cuda", "runner")])
def test_runner_images_check_the_port_they_listen_on(name: str, target: str) -> None:
    stage = stages(DOCKERFILES[name])[target]
    env = env_of(stage)
    assert env["LLAMA_ARG_HOST"] == "0.0.0.0"
    assert int(env["LLAMA_ARG_PORT"]) == RUNNER_PORT
    assert instructions(stage, "EXPOSE") == [str(RUNNER_PORT)]
    (check,) = instructions(stage, "HEALTHCHECK")
    assert "${LLAMA_ARG_PORT}/health" in check and "8080" not in check


# ---- compose and Prometheus ------------------------------------------------------------------


@pytest.fixture(scope="module", params=["gpu", "cpu"])
def project(request, compose, example_env) -> dict:
    if request.param == "gpu":
        return compose(env=example_env).project
    env = {**example_env, "LLAMA_GATEWAY_BACKENDS": "http://runner-cpu-0:8080"}
    return compose("--profile", "cpu", env=env).project


def test_compose_gateway_env_is_real_settings(project, setting_names) -> None:
    env = project["services"]["gateway"]["environment"]
    assert gateway_env_names(env) <= setting_names
    settings = load_settings(environ=env)
    assert settings.host == "0.0.0.0"
    assert settings.port == DEFAULT_PORT
    assert settings.redis_url.startswith("redis://") and settings.admin_token
    (published,) = project["services"]["gateway"]["ports"]
    assert published["target"] == settings.port
    assert f"{settings.port}/health" in " ".join(
        project["services"]["gateway"]["healthcheck"]["test"]
    )


def test_compose_backends_are_the_runners_of_the_profile(project) -> None:
    env = project["services"]["gateway"]["environment"]
    settings = load_settings(environ=env)
    runner_services = {n for n in project["services"] if n.startswith("runner-")}
    hosts = {urlsplit(url).hostname for url in settings.backends}
    assert hosts == runner_services
    assert {urlsplit(url).port for url in settings.backends} == {RUNNER_PORT}


def test_compose_gateway_and_runners_share_the_internal_key(project, example_env) -> None:
    env = project["services"]["gateway"]["environment"]
    assert env["LLAMA_GATEWAY_BACKEND_API_KEY"] == example_env["RUNNER_API_KEY"]
    assert project["secrets"]["runner_api_key"]["environment"] == "RUNNER_API_KEY"
    for name, service in project["services"].items():
        if name.startswith("runner-"):
            (secret,) = service["secrets"]
            command = service["command"]
            assert command[command.index("--api-key-file") + 1] == secret["target"]


def test_env_example_names_real_settings(example_env, setting_names) -> None:
    assert gateway_env_names(example_env) <= setting_names
    assert example_env["GATEWAY_ROUTING"] in ROUTING_POLICIES


def test_prometheus_scrapes_the_real_endpoints(gateway_paths, compose, example_env) -> None:
    config = yaml.safe_load(PROMETHEUS.read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    gateway = jobs["llama-gateway"]
    assert gateway["metrics_path"] in gateway_paths
    assert gateway["static_configs"][0]["targets"] == [f"gateway:{DEFAULT_PORT}"]
    runners = jobs["llama-server"]
    assert runners["metrics_path"] == "/metrics"
    (sd,) = runners["dns_sd_configs"]
    assert sd["port"] == RUNNER_PORT
    every_runner = set()
    for args, env in (((), example_env), (("--profile", "cpu"), example_env)):
        services = compose(*args, env=env).project["services"]
        every_runner |= {n for n in services if n.startswith("runner-")}
    assert set(sd["names"]) == every_runner
    prometheus = compose(env=example_env).project["services"]["prometheus"]
    targets = {s["source"]: s["target"] for s in prometheus["secrets"]}
    credentials = f"/run/secrets/{targets['runner_api_key']}"
    assert runners["authorization"]["credentials_file"] == credentials


# ---- Helm ------------------------------------------------------------------------------------


def helm_gateway_env(rendered: Rendered) -> tuple[dict, dict[str, str]]:
    """The gateway container and its environment as the kubelet would build it."""
    container = rendered.one("Deployment")["spec"]["template"]["spec"]["containers"][0]
    env: dict[str, str] = {}
    for item in container["env"]:
        value = item.get("value", f"<secret {item.get('valueFrom')}>")
        # Kubernetes expands $(NAME) from variables defined earlier in the list.
        env[item["name"]] = re.sub(r"\$\((\w+)\)", lambda m: env.get(m.group(1), ""), value)
    return container, env


@pytest.fixture(scope="module", params=["default", "gpu-external-redis"])
def rendered(request, rendered_default, rendered_gpu) -> Rendered:
    return rendered_default if request.param == "default" else rendered_gpu


def test_helm_gateway_env_is_real_settings(rendered: Rendered, setting_names) -> None:
    container, env = helm_gateway_env(rendered)
    assert gateway_env_names(env) <= setting_names
    settings = load_settings(environ=env)
    assert settings.host == "0.0.0.0"
    (port,) = container["ports"]
    assert port["name"] == "http" and port["containerPort"] == settings.port == DEFAULT_PORT


def test_helm_probes_use_the_gateways_paths(rendered: Rendered, gateway_paths) -> None:
    container, _ = helm_gateway_env(rendered)
    assert container["livenessProbe"]["httpGet"]["path"] == "/health"
    assert container["startupProbe"]["httpGet"]["path"] == "/health"
    assert container["readinessProbe"]["httpGet"]["path"] == "/ready"
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        assert container[probe]["httpGet"]["path"] in gateway_paths
        assert container[probe]["httpGet"]["port"] == "http"


def test_helm_backends_are_the_runner_pods(rendered: Rendered) -> None:
    _, env = helm_gateway_env(rendered)
    settings = load_settings(environ=env)
    runner = rendered.one("StatefulSet", "-runner")
    service = next(
        o
        for o in rendered.objects
        if o["kind"] == "Service" and o["metadata"]["name"] == runner["spec"]["serviceName"]
    )
    assert service["spec"]["clusterIP"] == "None"  # headless: one DNS name per pod
    (server,) = runner["spec"]["template"]["spec"]["containers"]
    (port,) = server["ports"]
    server_env = {e["name"]: e.get("value") for e in server["env"]}
    assert int(server_env["LLAMA_ARG_PORT"]) == port["containerPort"] == RUNNER_PORT
    assert service["spec"]["ports"][0]["port"] == port["containerPort"]
    sts, svc = runner["metadata"]["name"], service["metadata"]["name"]
    expected = [
        f"http://{sts}-{i}.{svc}.{NAMESPACE}.svc.cluster.local:{port['containerPort']}"
        for i in range(runner["spec"]["replicas"])
    ]
    assert settings.backends == expected
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert server[probe]["httpGet"]["path"] == "/health"  # llama-server's, needs no key


def test_helm_gateway_and_runners_share_the_internal_key(rendered: Rendered) -> None:
    container, _ = helm_gateway_env(rendered)
    key_ref = next(
        e["valueFrom"]["secretKeyRef"]
        for e in container["env"]
        if e["name"] == "LLAMA_GATEWAY_BACKEND_API_KEY"
    )
    runner = rendered.one("StatefulSet", "-runner")["spec"]["template"]["spec"]
    volume = next(v for v in runner["volumes"] if v["name"] == "runner-api-key")["secret"]
    assert volume["secretName"] == key_ref["name"]
    (item,) = volume["items"]
    assert item["key"] == key_ref["key"]
    (server,) = runner["containers"]
    mount = next(m for m in server["volumeMounts"] if m["name"] == "runner-api-key")
    args = server["args"]
    assert args[args.index("--api-key-file") + 1] == f"{mount['mountPath']}/{item['path']}"
    assert "--metrics" in args


def test_helm_service_monitor_scrapes_the_metrics_path(rendered_gpu: Rendered, gateway_paths):
    monitor = next(
        o
        for o in rendered_gpu.objects
        if o["kind"] == "ServiceMonitor" and not o["metadata"]["name"].endswith("-runner")
    )
    assert monitor["spec"]["endpoints"][0]["path"] in gateway_paths


def test_chart_defaults_match_the_gateway(chart) -> None:
    values = chart.values
    assert values["gateway"]["port"] == DEFAULT_PORT
    assert values["runner"]["port"] == RUNNER_PORT
    default_routing = Settings().routing
    assert values["gateway"]["routing"] == default_routing
    compose_example = read_env_file(DEPLOY / ".env.example")
    assert int(compose_example["GATEWAY_PORT"]) == DEFAULT_PORT


def test_helm_extra_env_takes_real_settings_only(render, chart, helm, setting_names) -> None:
    rendered = render({"gateway": {"extraEnv": {"LLAMA_GATEWAY_QUEUE_SIZE": 512}}})
    _, env = helm_gateway_env(rendered)
    assert gateway_env_names(env) <= setting_names
    assert load_settings(environ=env).queue_size == 512
    with pytest.raises(helm.HelmValuesError):
        chart.validate_schema({"gateway": {"extraEnv": {"QUEUE_SIZE": "512"}}})


# ---- the safe choices (#15 item 12) ------------------------------------------------------------


def test_compose_protects_the_gateways_internals(project, example_env) -> None:
    """Admin token (for /runners and /ready's details) and metrics token set, CORS off; and
    Prometheus scrapes /metrics with the very token the gateway wants."""
    env = project["services"]["gateway"]["environment"]
    settings = load_settings(environ=env)
    assert settings.admin_token and settings.metrics_token == example_env["METRICS_TOKEN"]
    assert settings.metrics_token != settings.admin_token
    assert settings.cors_origins == []
    assert project["secrets"]["metrics_token"]["environment"] == "METRICS_TOKEN"
    config = yaml.safe_load(PROMETHEUS.read_text())
    job = next(j for j in config["scrape_configs"] if j["job_name"] == "llama-gateway")
    targets = {s["source"]: s["target"] for s in project["services"]["prometheus"]["secrets"]}
    assert job["authorization"] == {
        "type": "Bearer",
        "credentials_file": f"/run/secrets/{targets['metrics_token']}",
    }


def test_compose_refuses_to_start_without_a_metrics_token(compose, example_env) -> None:
    env = {k: v for k, v in example_env.items() if k != "METRICS_TOKEN"}
    run = compose(env=env)
    assert run.returncode != 0 and "METRICS_TOKEN" in run.stderr


def test_helm_protects_the_gateways_internals(rendered: Rendered) -> None:
    container, env = helm_gateway_env(rendered)
    refs = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in container["env"] if "valueFrom" in e}
    metrics_ref = refs["LLAMA_GATEWAY_METRICS_TOKEN"]
    assert metrics_ref["key"] == "metrics-token"
    assert refs["LLAMA_GATEWAY_ADMIN_TOKEN"]["name"] == metrics_ref["name"]
    assert "LLAMA_GATEWAY_CORS_ORIGINS" not in env  # off unless origins are listed
    made = [o for o in rendered.objects if o["kind"] == "Secret"]
    for secret in made:  # none with auth.existingSecret
        assert secret["metadata"]["name"] == metrics_ref["name"]
        assert {"admin-token", "metrics-token"} <= set(secret["data"])
        assert secret["data"]["metrics-token"] != secret["data"]["admin-token"]


def test_helm_service_monitor_sends_the_metrics_token(rendered_gpu: Rendered) -> None:
    container, _ = helm_gateway_env(rendered_gpu)
    ref = next(
        e["valueFrom"]["secretKeyRef"]
        for e in container["env"]
        if e["name"] == "LLAMA_GATEWAY_METRICS_TOKEN"
    )
    monitor = next(
        o
        for o in rendered_gpu.objects
        if o["kind"] == "ServiceMonitor" and not o["metadata"]["name"].endswith("-runner")
    )
    (endpoint,) = monitor["spec"]["endpoints"]
    credentials = endpoint["authorization"]["credentials"]
    assert endpoint["authorization"]["type"] == "Bearer"
    assert (credentials["name"], credentials["key"]) == (ref["name"], ref["key"])


def test_helm_cors_origins_reach_the_gateway(render, chart, helm) -> None:
    origins = ["https://chat.example.com", "https://ui.example.com"]
    _, env = helm_gateway_env(render({"gateway": {"corsOrigins": origins}}))
    assert load_settings(environ=env).cors_origins == origins
    with pytest.raises(helm.HelmValuesError):
        chart.validate_schema({"gateway": {"corsOrigins": "https://chat.example.com"}})
