"""Session-wide fixtures: one real control plane per run, a namespace and an operator per test."""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness import cluster as cluster_mod
from harness.cluster import Cluster
from harness.operator import OperatorProcess
from harness.rollouts import Rollouts
from herdsman.cluster.kube import Path as KPath

NAMESPACES = KPath("", "v1", "namespaces", namespaced=False)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    setattr(item, f"rep_{report.when}", report)


@pytest.fixture(scope="session")
def cluster() -> Iterator[Cluster]:
    started = cluster_mod.start()
    yield started
    cluster_mod.stop(started)


@pytest.fixture
def namespace(cluster: Cluster, request: pytest.FixtureRequest) -> Iterator[str]:
    slug = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")[:40].strip("-")
    name = f"t-{slug}-{secrets.token_hex(2)}"
    cluster.rest.create(
        NAMESPACES.url(), {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
    )
    yield name
    cluster.rest.delete(NAMESPACES.url(None, name))


@pytest.fixture
def operator(
    cluster: Cluster, namespace: str, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[OperatorProcess]:
    proc = OperatorProcess(
        cluster=cluster, namespaces=[namespace], log_path=tmp_path / "operator.log"
    )
    proc.start()
    yield proc
    proc.stop()
    failed = getattr(request.node, "rep_call", None)
    if failed is not None and failed.failed:
        print(f"\n----- operator log ({proc.log_path}) -----\n{proc.log()[-8000:]}")


@pytest.fixture
def rollouts(cluster: Cluster, namespace: str) -> Rollouts:
    return Rollouts(cluster, namespace)
