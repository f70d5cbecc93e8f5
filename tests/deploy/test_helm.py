"""deploy/helm/llama-gateway: linted strictly, rendered with the default values and with a
GPU + external-Redis values file, every manifest valid for Kubernetes 1.29-1.31, and a schema
that refuses bad values."""

from __future__ import annotations

import json
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from .conftest import BAD_VALUES, CHART, KUBERNETES_VERSIONS, NAMESPACE, RELEASE, Rendered

# Custom resources have no schema in kubernetes-validate (it ships the core API only), so they
# are checked for shape in test_service_monitor_scrapes_gateway_and_runners instead.
CUSTOM_KINDS = {"ServiceMonitor"}


@pytest.fixture(scope="module", params=["default", "gpu-external-redis"])
def case(request, ci_values) -> tuple[str, dict]:
    return request.param, ({} if request.param == "default" else ci_values)


@pytest.mark.parametrize("kube_version", KUBERNETES_VERSIONS)
def test_lint_strict(helm, case, kube_version: str) -> None:
    name, values = case
    report = helm.lint(
        CHART, values, strict=True, namespace=NAMESPACE, kube_version=f"v{kube_version}"
    )
    problems = [m for m in report["messages"] if m["severity"] >= 2]  # 2 warning, 3 error
    assert not problems and not report["errors"], f"{name}: {report}"


@pytest.mark.parametrize("kube_version", KUBERNETES_VERSIONS)
def test_manifests_are_valid_kubernetes(
    rendered_default: Rendered, rendered_gpu: Rendered, kube_version: str
) -> None:
    for rendered in (rendered_default, rendered_gpu):
        for obj in rendered.objects:
            if obj["kind"] in CUSTOM_KINDS:
                continue
            # strict: unknown fields are errors too (a misspelt key would be dropped silently).
            kubernetes_validate.validate(obj, kube_version, strict=True)


def test_default_values_render_the_whole_stack(rendered_default: Rendered) -> None:
    assert {
        "Deployment",
        "Service",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
        "ServiceAccount",
        "StatefulSet",
        "Secret",
        "NetworkPolicy",
        "ConfigMap",
    } <= rendered_default.kinds()
    assert "ServiceMonitor" not in rendered_default.kinds(), "needs the operator CRD: opt-in"
    redis = rendered_default.one("StatefulSet", "-redis")
    args = redis["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[args.index("--appendonly") + 1] == "yes"
    assert redis["spec"]["volumeClaimTemplates"][0]["metadata"]["name"] == "data"
    assert "NOTES.txt" in " ".join(rendered_default.templates)


def test_gateway_deployment_is_highly_available(rendered_default: Rendered) -> None:
    hpa = rendered_default.one("HorizontalPodAutoscaler")
    assert hpa["spec"]["minReplicas"] >= 2
    pdb = rendered_default.one("PodDisruptionBudget")
    assert pdb["spec"]["minAvailable"] >= 1
    container = rendered_default.one("Deployment")["spec"]["template"]["spec"]["containers"][0]
    assert container["resources"]["requests"] and container["resources"]["limits"]


def test_gpu_values_pin_one_gpu_per_runner(rendered_gpu: Rendered, ci_values) -> None:
    runner = rendered_gpu.one("StatefulSet", "-runner")
    spec = runner["spec"]["template"]["spec"]
    (container,) = spec["containers"]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert runner["spec"]["replicas"] == ci_values["runner"]["replicas"]
    assert spec["nodeSelector"] and spec["tolerations"]
    models = next(v for v in spec["volumes"] if v["name"] == "models")
    assert models["persistentVolumeClaim"] == {"claimName": "gguf-models", "readOnly": True}
    assert "initContainers" not in spec
    deployment = rendered_gpu.one("Deployment")
    assert deployment["spec"]["replicas"] == 3  # autoscaling off in the ci values


def test_default_runner_downloads_its_model(rendered_default: Rendered) -> None:
    runner = rendered_default.one("StatefulSet", "-runner")
    (init,) = runner["spec"]["template"]["spec"]["initContainers"]
    env = {e["name"]: e["value"] for e in init["env"]}
    assert env["MODEL_URL"].startswith("https://") and len(env["MODEL_SHA256"]) == 64
    assert runner["spec"]["volumeClaimTemplates"][0]["metadata"]["name"] == "models"
    (server,) = runner["spec"]["template"]["spec"]["containers"]
    assert "nvidia.com/gpu" not in server["resources"].get("limits", {})


def test_external_redis_replaces_the_bundled_one(rendered_gpu: Rendered) -> None:
    assert not [o for o in rendered_gpu.objects if o["metadata"]["name"].endswith("-redis")]
    container = rendered_gpu.one("Deployment")["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e for e in container["env"]}
    assert env["LLAMA_GATEWAY_REDIS_URL"]["valueFrom"]["secretKeyRef"] == {
        "name": "llama-gateway-redis",
        "key": "redis-url",
    }
    # An existing Secret is used as given: the chart makes none.
    assert "Secret" not in rendered_gpu.kinds()


def test_network_policy_lets_only_the_gateway_reach_runners(rendered_default: Rendered) -> None:
    policy = rendered_default.one("NetworkPolicy", "-runner")
    runner_labels = rendered_default.one("StatefulSet", "-runner")["spec"]["selector"]
    assert policy["spec"]["podSelector"] == runner_labels
    (rule,) = policy["spec"]["ingress"]
    (peer,) = rule["from"]
    gateway_labels = rendered_default.one("Deployment")["spec"]["selector"]["matchLabels"]
    assert peer["podSelector"]["matchLabels"] == gateway_labels


def test_service_monitor_scrapes_gateway_and_runners(rendered_gpu: Rendered) -> None:
    monitors = {
        o["metadata"]["name"]: o for o in rendered_gpu.objects if o["kind"] == "ServiceMonitor"
    }
    assert len(monitors) == 2
    for monitor in monitors.values():
        assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
        assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
        (endpoint,) = monitor["spec"]["endpoints"]
        assert endpoint["port"] == "http" and endpoint["path"] == "/metrics"
    runner_monitor = next(m for name, m in monitors.items() if name.endswith("-runner"))
    credentials = runner_monitor["spec"]["endpoints"][0]["authorization"]["credentials"]
    assert credentials == {"name": "llama-gateway-secrets", "key": "runner-api-key"}
    # Prometheus may reach the runners through the NetworkPolicy when it scrapes them.
    policy = rendered_gpu.one("NetworkPolicy", "-runner")
    assert any("namespaceSelector" in peer for peer in policy["spec"]["ingress"][0]["from"])


def test_dashboard_config_map_carries_the_dashboard(rendered_default: Rendered) -> None:
    config_map = rendered_default.one("ConfigMap", "-dashboard")
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    shipped = json.loads((CHART / "dashboards" / "llama-gateway.json").read_text())
    assert json.loads(config_map["data"]["llama-gateway.json"]) == shipped


def test_generated_secrets_are_not_empty(rendered_default: Rendered) -> None:
    secret = rendered_default.one("Secret")
    assert set(secret["data"]) == {
        "admin-token",
        "runner-api-key",
        "redis-password",
        "metrics-token",
    }
    assert all(len(value) >= 32 for value in secret["data"].values())


# ---- the schema ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values_file", "complaint"),
    [
        ("bad-type.yaml", "want integer"),
        ("bad-unknown-key.yaml", "additional properties 'runners' not allowed"),
    ],
)
def test_schema_refuses_bad_values(helm, chart, values_file: str, complaint: str) -> None:
    values = yaml.safe_load((BAD_VALUES / values_file).read_text())
    with pytest.raises(helm.HelmValuesError, match=complaint):
        chart.validate_schema(values)
    with pytest.raises(helm.HelmValuesError):
        chart.render(values, name=RELEASE, namespace=NAMESPACE)
    report = helm.lint(CHART, values, strict=True)
    assert report["errors"], "helm lint must fail on these values"


def test_schema_closes_the_top_level_and_knows_every_default(chart) -> None:
    schema = chart.schema
    assert schema["additionalProperties"] is False
    defaults = yaml.safe_load((CHART / "values.yaml").read_text())
    assert set(defaults) <= set(schema["properties"])
    chart.validate_schema(defaults)


def test_ci_values_file_is_where_chart_testing_looks() -> None:
    assert sorted(p.name for p in (CHART / "ci").glob("*-values.yaml")) == [
        "gpu-external-redis-values.yaml"
    ]
    assert Path(CHART / "templates" / "NOTES.txt").is_file()
