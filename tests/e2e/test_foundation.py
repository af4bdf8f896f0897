"""The foundation: a real kube-apiserver built from the official modules, KWOK nodes, the operator."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.cluster import Cluster, wait_until
from harness.operator import OperatorProcess
from harness.rollouts import Rollouts, rollout
from herdsman.cluster.kube import Path as KPath

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
DEPLOYMENTS = KPath("apps", "v1", "deployments")
NODES = KPath("", "v1", "nodes", namespaced=False)


def _wanted_version() -> str:
    for line in (ROOT / "tests" / "cluster" / "versions.env").read_text().splitlines():
        if line.startswith("K8S_VERSION="):
            return "v" + line.split("=", 1)[1].strip()
    raise AssertionError("K8S_VERSION missing from versions.env")


def test_the_api_server_is_the_real_release(cluster: Cluster) -> None:
    version = json.loads(cluster.kubectl("get", "--raw", "/version"))
    assert version["gitVersion"] == _wanted_version()
    assert version["gitTreeState"] == "clean"


def test_kwok_nodes_are_ready(cluster: Cluster) -> None:
    nodes = cluster.rest.list(NODES.url())
    assert len(nodes) >= 3
    for node in nodes:
        ready = {c["type"]: c["status"] for c in node["status"]["conditions"]}["Ready"]
        assert ready == "True", node["metadata"]["name"]
        # Fake nodes, real everything else.
        assert node["metadata"]["annotations"].get("kwok.x-k8s.io/node") == "fake"


def test_a_deployment_becomes_ready_through_kwok(cluster: Cluster, namespace: str) -> None:
    body = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web"},
        "spec": {
            "replicas": 3,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "web", "image": "registry.k8s.io/pause:3.9"}]},
            },
        },
    }
    cluster.rest.create(DEPLOYMENTS.url(namespace), body)

    def ready() -> int:
        got = cluster.rest.get(DEPLOYMENTS.url(namespace, "web")) or {}
        return int((got.get("status") or {}).get("readyReplicas", 0) or 0) >= 3

    wait_until(ready, timeout=60, what="3 ready pods")


def test_the_operator_sees_a_rollout_and_reports_it(
    operator: OperatorProcess, rollouts: Rollouts
) -> None:
    rollouts.create(rollout(replicas=3, steps=[{"setWeight": 50}]))
    status = rollouts.wait_healthy("checkout-v001")
    assert status["availableReplicas"] == 3
    assert status["observedGeneration"] == 1
    assert [t.reason for t in operator.transitions("checkout")][:1] == ["Initialized"]
    # Deleting works without the operator's help: no finalizer holds the Rollout, and the
    # operator keeps its state in status, not in annotations of its framework.
    meta = rollouts.get().get("metadata", {})
    assert not meta.get("finalizers")
    assert not [k for k in meta.get("annotations", {}) if "kopf" in k]
