"""deploy/ is checked the way CI without a Docker engine can: lint, Kubernetes schemas for a pinned version,
the KEDA ScaledObject model, the Compose specification's schema, and the Dockerfile's promises."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"
K8S = DEPLOY / "k8s" / "base"
KUBERNETES_VERSION = "1.33.0"
YAML_FILES = sorted(p for p in DEPLOY.rglob("*") if p.suffix in (".yaml", ".yml"))


def documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


@pytest.mark.parametrize("path", YAML_FILES, ids=lambda p: str(p.relative_to(DEPLOY)))
def test_yamllint(path: Path) -> None:
    from yamllint import linter
    from yamllint.config import YamlLintConfig

    config = YamlLintConfig("extends: default\nrules:\n  line-length: {max: 120}\n  document-start: disable\n"
                            "  comments: {min-spaces-from-content: 1}\n  truthy: {check-keys: false}\n")
    problems = [f"{p.line}:{p.column} {p.message}" for p in linter.run(path.read_text(), config)]
    assert problems == []


K8S_DOCS = [(path, doc) for path in sorted(K8S.glob("*.yaml")) if path.name != "kustomization.yaml"
            for doc in documents(path)]


@pytest.mark.parametrize(("path", "doc"), [d for d in K8S_DOCS if d[1]["kind"] != "ScaledObject"],
                         ids=lambda v: v.name if isinstance(v, Path) else v["kind"] if isinstance(v, dict) else "")
def test_kubernetes_schema(path: Path, doc: dict[str, Any]) -> None:
    import kubernetes_validate

    kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def test_kustomization_lists_every_manifest() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    manifests = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert set(kustomization["resources"]) == manifests


def test_keda_scaled_object_matches_the_crd_model() -> None:
    """Round trip through KEDA's CRD-generated models: an unknown or mistyped field would not survive."""
    from cloudcoil.models.keda.v1alpha1 import ScaledObject

    [doc] = documents(K8S / "scaledobject.yaml")
    model = ScaledObject.model_validate(doc)
    assert model.model_dump(by_alias=True, exclude_none=True, mode="json") == doc
    assert doc["spec"]["scaleTargetRef"]["name"] == "parley-worker"
    assert "parley_backlog_turns" in doc["spec"]["triggers"][0]["metadata"]["query"]


def test_worker_grace_period_outlasts_the_shutdown_grace() -> None:
    from parley.worker.settings import Settings

    deployments = {doc["metadata"]["name"]: doc for _, doc in K8S_DOCS if doc["kind"] == "Deployment"}
    grace = deployments["parley-worker"]["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    config = {doc["metadata"]["name"]: doc for _, doc in K8S_DOCS if doc["kind"] == "ConfigMap"}["parley-config"]
    assert grace > float(config["data"].get("PARLEY_SHUTDOWN_GRACE_S", Settings().shutdown_grace_s)) + 10


def test_compose_matches_the_compose_spec() -> None:
    from importlib import resources

    schema = json.loads((resources.files("check_jsonschema.builtin_schemas.vendor") / "compose-spec.json")
                        .read_text())
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    jsonschema.validate(compose, schema)
    assert {"redis", "api", "worker", "reaper", "flower", "webhooks", "prometheus", "grafana"} <= set(
        compose["services"])
    assert "--appendonly" in compose["services"]["redis"]["command"]


def test_dockerfile_is_multistage_non_root_with_healthcheck() -> None:
    text = (DEPLOY / "Dockerfile").read_text()
    assert len(re.findall(r"^FROM ", text, re.M)) >= 2
    assert re.search(r"^USER (?!root|0)", text, re.M)
    assert re.search(r"^HEALTHCHECK ", text, re.M)
    assert "-slim" in text


def test_grafana_dashboard_uses_real_metrics() -> None:
    from parley.worker import metrics

    known = {m._name for m in (metrics.TURNS_ACCEPTED, metrics.TURNS_COMPLETED, metrics.TURNS_FAILED,  # noqa: SLF001
                               metrics.TURNS_DEAD_LETTERED, metrics.RETRIES, metrics.LEASE_RECOVERIES,
                               metrics.QUEUE_SECONDS, metrics.UPSTREAM_SECONDS)}
    known |= {name for name, _ in metrics.BACKLOG_GAUGES.values()} | {"parley_backlog_turns"}
    dashboard = json.loads((DEPLOY / "grafana" / "parley-dashboard.json").read_text())
    names = {n for panel in dashboard["panels"] for t in panel["targets"]
             for n in re.findall(r"parley_[a-z_]+", t["expr"])}
    stripped = {re.sub(r"_(total|bucket|count|sum)$", "", n) for n in names}
    assert names and stripped <= {re.sub(r"_total$", "", k) for k in known}


def test_the_acl_grants_every_command_the_lua_scripts_call() -> None:
    """deploy/redis/users.acl names each command a script in worker/store/lua/ calls: a new script command
    the rule lacks would fail every call of that script under the ACL user (found by test_redis_acl.py only
    when that path runs)."""
    import re

    lua_dir = DEPLOY.parent / "worker" / "store" / "lua"
    called = {m.lower() for path in lua_dir.glob("*.lua")
              for m in re.findall(r"redis\.call\('([A-Z]+)'", path.read_text())}
    granted = set(re.findall(r"\+([a-z|]+)", (DEPLOY / "redis" / "users.acl").read_text()))
    assert called and called - granted == set()
