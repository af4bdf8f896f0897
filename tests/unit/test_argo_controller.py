"""`kubectl herdsman import` refuses while an Argo Rollouts controller runs (both would act on
the same pods), warns loudly with --force, and says what it could not check (no cluster)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from herdsman.cli import argo_controller, importing
from herdsman.cli import main as cli
from herdsman.cli.argo_controller import LEASE_NAME, detect, evidence
from herdsman.cluster.kube import KubeError

pytestmark = pytest.mark.unit

NOW = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)


def deployment(
    replicas: int = 1, ready: int = 1, component: str = "rollouts-controller"
) -> dict[str, Any]:
    return {
        "metadata": {
            "name": "argo-rollouts",
            "namespace": "argo-rollouts",
            "labels": {
                "app.kubernetes.io/name": "argo-rollouts",
                "app.kubernetes.io/component": component,
            },
        },
        "spec": {"replicas": replicas},
        "status": {"readyReplicas": ready},
    }


def pod(phase: str = "Running") -> dict[str, Any]:
    return {
        "metadata": {
            "name": "argo-rollouts-abc",
            "namespace": "tools",
            "labels": {"app.kubernetes.io/name": "argo-rollouts"},
        },
        "status": {"phase": phase},
    }


def lease(age: timedelta, namespace: str = "argo-rollouts") -> dict[str, Any]:
    renewed = (NOW - age).isoformat().replace("+00:00", "Z")
    return {
        "metadata": {"name": LEASE_NAME, "namespace": namespace},
        "spec": {"holderIdentity": "argo-rollouts-7d9", "renewTime": renewed},
    }


def test_a_running_controller_deployment_is_evidence() -> None:
    assert evidence([deployment()], [], [], NOW) == [
        "Deployment argo-rollouts/argo-rollouts (1/1 ready)"
    ]


def test_a_controller_scaled_to_zero_or_the_dashboard_is_not() -> None:
    assert evidence([deployment(replicas=0, ready=0)], [], [], NOW) == []
    assert evidence([deployment(component="rollouts-dashboard")], [], [], NOW) == []


def test_running_pods_count_when_no_deployment_does() -> None:
    assert evidence([], [pod()], [], NOW) == ["Pod tools/argo-rollouts-abc running"]
    assert evidence([], [pod("Succeeded")], [], NOW) == []


def test_a_fresh_leader_lease_is_evidence_and_a_stale_one_is_not() -> None:
    assert evidence([], [], [lease(timedelta(seconds=10))], NOW) == [
        f"Lease argo-rollouts/{LEASE_NAME} renewed 10s ago by argo-rollouts-7d9"
    ]
    assert evidence([], [], [lease(timedelta(minutes=10))], NOW) == []


class FakeRest:
    def __init__(
        self,
        deployments: list[dict[str, Any]],
        leases: dict[str, dict[str, Any]],
        forbidden: bool = False,
    ) -> None:
        self.deployments, self.leases, self.forbidden = deployments, leases, forbidden
        self.got: list[str] = []

    def list(self, path: str, **_: Any) -> list[dict[str, Any]]:
        if self.forbidden:
            raise KubeError(403, "Forbidden", "deployments.apps is forbidden")
        return self.deployments if path.endswith("/deployments") else []

    def get(self, path: str, **_: Any) -> dict[str, Any] | None:
        self.got.append(path)
        return self.leases.get(path.split("/namespaces/")[1].split("/")[0])


def test_detect_reads_the_lease_where_the_controller_and_the_rollout_live() -> None:
    rest = FakeRest([deployment()], {"argo-rollouts": lease(timedelta(seconds=3))})
    found, unchecked = detect(rest, "shop", NOW)  # type: ignore[arg-type]
    assert len(found) == 2
    assert unchecked == []
    assert sorted(p.split("/namespaces/")[1] for p in rest.got) == [
        f"argo-rollouts/leases/{LEASE_NAME}",
        f"shop/leases/{LEASE_NAME}",
    ]


def test_detect_says_what_it_was_not_allowed_to_read() -> None:
    found, unchecked = detect(FakeRest([], {}, forbidden=True), "shop", NOW)  # type: ignore[arg-type]
    assert found == []
    assert unchecked == [
        "Deployments and Pods labelled app.kubernetes.io/name=argo-rollouts in all namespaces"
    ]


@pytest.fixture
def importer(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """cmd_import with the plan and the writes stubbed: records whether it executed."""
    executed: list[str] = []
    monkeypatch.setattr(cli, "connect", lambda args: (object(), "shop"))
    monkeypatch.setattr(importing, "read", lambda rest, ns, name: "plan")
    monkeypatch.setattr(importing, "describe", lambda p: ["create rollouts.herdsman.dev/checkout"])
    monkeypatch.setattr(importing, "execute", lambda rest, p, say: executed.append(p))
    monkeypatch.setattr(
        argo_controller,
        "detect",
        lambda rest, ns, now: (["Deployment argo-rollouts/argo-rollouts (1/1 ready)"], []),
    )
    return executed


def test_import_refuses_while_argo_runs(
    importer: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["import", "checkout"]) == 1
    err = capsys.readouterr().err
    assert "an Argo Rollouts controller is running" in err
    assert "argo-rollouts/argo-rollouts" in err
    assert "--force" in err
    assert importer == []


def test_import_with_force_goes_ahead_warning_loudly(
    importer: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["import", "checkout", "--force"]) == 0
    assert "WARNING: an Argo Rollouts controller is running" in capsys.readouterr().err
    assert importer == ["plan"]


def test_a_dry_run_says_it_would_be_refused(
    importer: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["import", "checkout", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "refused unless --force" in out
    assert importer == []


def test_import_goes_ahead_when_no_controller_runs(
    importer: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(argo_controller, "detect", lambda rest, ns, now: ([], []))
    assert cli.main(["import", "checkout"]) == 0
    assert importer == ["plan"]
