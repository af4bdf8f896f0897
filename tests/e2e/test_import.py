"""`kubectl herdsman import`: a live Argo Rollout taken over in place, on the real control plane.

Argo's own Rollout CRD (from ../shared/argo-corpus/crds, read where it lies) is installed, and
the Argo Rollout, its ReplicaSets (owned by it, named `<rollout>-<hash>`, labelled
`rollouts-pod-template-hash`, annotated with Argo's revision), their pods (made by the real
ReplicaSet controller) and the Services selecting the stable hash are laid out as Argo leaves
them. No Argo controller runs: as the import's documentation asks, it is stopped first.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from harness.argo_corpus import corpus_dir
from harness.cluster import Cluster, wait_until
from harness.operator import OperatorProcess
from harness.rollouts import IMAGE_V1, IMAGE_V2, IMAGE_V3, Rollouts
from herdsman.cli.argo_controller import LEASE_NAME, LEASES
from herdsman.cli.importing import ARGO_ROLLOUTS
from herdsman.cli.main import main
from herdsman.cluster.kube import DEPLOYMENTS, PODS, REPLICA_SETS, ROLLOUTS, SERVICES, Rest
from herdsman.naming import LABEL_GROUP

pytestmark = pytest.mark.e2e

ARGO_HASH = "rollouts-pod-template-hash"
STABLE_HASH = "6d4f8b7c9f"
OLD_HASH = "5b8c7d9f4c"
REPLICAS = 4


@pytest.fixture(scope="module")
def argo_crd(cluster: Cluster) -> Iterator[None]:
    """Argo's Rollout CRD for this module only: left installed, it would make `rollouts` mean
    Argo's to kubectl in every later test (see assert_kubectl_names)."""
    crd = corpus_dir() / "crds" / "rollout-crd.yaml"
    cluster.kubectl("apply", "--server-side", "-f", str(crd))
    wait_until(
        lambda: (
            cluster.kubectl(
                "get",
                "crd/rollouts.argoproj.io",
                "-o",
                "jsonpath={.status.conditions[?(@.type=='Established')].status}",
                check=False,
            ).strip()
            == "True"
        ),
        timeout=60,
        what="Argo's Rollout CRD established",
    )
    yield
    cluster.kubectl("delete", "crd/rollouts.argoproj.io", "--ignore-not-found", "--timeout=60s")


def template(image: str, pod_hash: str | None = None) -> dict[str, Any]:
    labels = {"app": "checkout"}
    if pod_hash:
        labels[ARGO_HASH] = pod_hash
    return {
        "metadata": {"labels": labels},
        "spec": {"containers": [{"name": "app", "image": image}]},
    }


class ArgoWorld:
    """An Argo Rollout at rest as Argo leaves it: stable revision 2, revision 1 scaled down."""

    def __init__(self, rest: Rest, ns: str) -> None:
        self.rest, self.ns = rest, ns

    def lay_out(self, *, mid_canary: bool = False) -> dict[str, Any]:
        argo = self.rest.create(
            ARGO_ROLLOUTS.url(self.ns),
            {
                "apiVersion": "argoproj.io/v1alpha1",
                "kind": "Rollout",
                "metadata": {"name": "checkout"},
                "spec": {
                    "replicas": REPLICAS,
                    "revisionHistoryLimit": 3,
                    "selector": {"matchLabels": {"app": "checkout"}},
                    "template": template(IMAGE_V2),
                    "strategy": {
                        "canary": {
                            "stableService": "checkout",
                            "canaryService": "checkout-canary",
                            "steps": [{"setWeight": 50}, {"pause": {"duration": 1}}],
                        }
                    },
                },
            },
        )
        owner = {
            "apiVersion": "argoproj.io/v1alpha1",
            "kind": "Rollout",
            "name": "checkout",
            "uid": argo["metadata"]["uid"],
            "controller": True,
            "blockOwnerDeletion": True,
        }
        for pod_hash, image, revision, replicas in (
            (STABLE_HASH, IMAGE_V2, 2, REPLICAS),
            (OLD_HASH, IMAGE_V1, 1, 0),
        ):
            self.rest.create(
                REPLICA_SETS.url(self.ns),
                {
                    "apiVersion": "apps/v1",
                    "kind": "ReplicaSet",
                    "metadata": {
                        "name": f"checkout-{pod_hash}",
                        "labels": {"app": "checkout", ARGO_HASH: pod_hash},
                        "annotations": {
                            "rollout.argoproj.io/revision": str(revision),
                            "rollout.argoproj.io/desired-replicas": str(REPLICAS),
                        },
                        "ownerReferences": [owner],
                    },
                    "spec": {
                        "replicas": replicas,
                        "selector": {"matchLabels": {"app": "checkout", ARGO_HASH: pod_hash}},
                        "template": template(image, pod_hash),
                    },
                },
            )
        for svc in ("checkout", "checkout-canary"):
            self.rest.create(
                SERVICES.url(self.ns),
                {
                    "apiVersion": "v1",
                    "kind": "Service",
                    "metadata": {
                        "name": svc,
                        "annotations": {
                            "argo-rollouts.argoproj.io/managed-by-rollouts": "checkout"
                        },
                    },
                    "spec": {
                        "selector": {"app": "checkout", ARGO_HASH: STABLE_HASH},
                        "ports": [{"port": 80, "targetPort": 8080}],
                    },
                },
            )
        status = {
            "phase": "Healthy",
            "stableRS": STABLE_HASH,
            "currentPodHash": OLD_HASH if mid_canary else STABLE_HASH,
            "currentStepIndex": 1 if mid_canary else 2,
            "replicas": REPLICAS,
            "availableReplicas": REPLICAS,
            "observedGeneration": "1",
        }
        self.rest.patch(ARGO_ROLLOUTS.url(self.ns, "checkout", "status"), {"status": status})
        wait_until(lambda: len(self.ready_pods()) == REPLICAS, timeout=60, what="Argo's pods up")
        return argo

    def pods(self) -> list[dict[str, Any]]:
        return self.rest.list(PODS.url(self.ns), labels="app=checkout")

    def ready_pods(self, selector: dict[str, str] | None = None) -> list[dict[str, Any]]:
        found = []
        for p in self.pods():
            labels = p["metadata"].get("labels") or {}
            if selector and any(labels.get(k) != v for k, v in selector.items()):
                continue
            ready = any(
                c.get("type") == "Ready" and c.get("status") == "True"
                for c in (p.get("status") or {}).get("conditions") or []
            )
            if ready and not p["metadata"].get("deletionTimestamp"):
                found.append(p)
        return found

    def replica_set_writes(self) -> dict[str, Any]:
        """What a writer other than the ReplicaSet controller could change on each ReplicaSet.

        Not resourceVersion: the controller keeps writing status while KWOK's pods come up.
        """
        return {
            n: (
                rs["spec"],
                rs["metadata"].get("labels"),
                rs["metadata"].get("annotations"),
                rs["metadata"].get("ownerReferences"),
            )
            for n, rs in self.replica_sets().items()
        }

    def replica_sets(self) -> dict[str, dict[str, Any]]:
        items = self.rest.list(REPLICA_SETS.url(self.ns), labels="app=checkout")
        return {rs["metadata"]["name"]: rs for rs in items}

    def selector(self, svc: str) -> dict[str, str]:
        body = self.rest.get(SERVICES.url(self.ns, svc))
        assert body is not None
        return dict(body["spec"]["selector"])


class Capacity:
    """Samples, all through the import, how many ready pods the stable Service selects."""

    def __init__(self, world: ArgoWorld) -> None:
        self.world = world
        self.samples: list[int] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.stop.is_set():
            selector = self.world.selector("checkout")
            self.samples.append(len(self.world.ready_pods(selector)))
            self.stop.wait(0.05)

    def __enter__(self) -> Capacity:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        self.thread.join()


@pytest.fixture
def world(argo_crd: None, cluster: Cluster, namespace: str) -> ArgoWorld:
    return ArgoWorld(cluster.rest, namespace)


@pytest.fixture
def plugin(cluster: Cluster, namespace: str, capsys: pytest.CaptureFixture[str]) -> Any:
    flags = ["-n", namespace, "--kubeconfig", str(cluster.kubeconfig)]

    def run(*args: str) -> tuple[int, str, str]:
        capsys.readouterr()
        code = main([*args, *flags])
        out, err = capsys.readouterr()
        return code, out, err

    return run


def test_import_takes_a_live_argo_rollout_over_without_restarting_a_pod(
    operator: OperatorProcess,
    rollouts: Rollouts,
    world: ArgoWorld,
    plugin: Any,
    cluster: Cluster,
    tmp_path: Path,
) -> None:
    argo = world.lay_out()
    before = {p["metadata"]["uid"] for p in world.pods()}
    assert len(before) == REPLICAS

    with Capacity(world) as capacity:
        code, out, err = plugin("import", "checkout")
        assert code == 0, err
        status = rollouts.wait_healthy(f"checkout-{STABLE_HASH}", timeout=60)
        # Some time under the operator, to see it leave the adopted groups alone.
        rollouts.wait(lambda s: s.get("phase") == "Healthy", what="still healthy")
        wait_until(lambda: len(capacity.samples) > 20, what="samples")
    assert "imported" in out
    # Not a moment with fewer ready pods behind the stable Service.
    assert min(capacity.samples) >= REPLICAS, capacity.samples
    # Not a pod restarted, replaced or added.
    after = {p["metadata"]["uid"] for p in world.pods()}
    assert after == before
    # Status carried over: Argo's stable ReplicaSet at Argo's revision.
    assert status["stableRevision"] == 2
    assert status["currentRevision"] == 2
    groups = {g["name"]: g for g in status["serverGroups"]}
    assert groups[f"checkout-{STABLE_HASH}"]["role"] == "stable"
    assert groups[f"checkout-{OLD_HASH}"]["revision"] == 1
    # The ReplicaSets are the Herdsman Rollout's alone; the Argo Rollout owns nothing.
    herdsman_uid = rollouts.get()["metadata"]["uid"]
    sets = world.replica_sets()
    assert set(sets) == {f"checkout-{STABLE_HASH}", f"checkout-{OLD_HASH}"}
    for rs in sets.values():
        refs = rs["metadata"]["ownerReferences"]
        assert [(r["kind"], r["uid"]) for r in refs] == [("Rollout", herdsman_uid)]
        assert argo["metadata"]["uid"] not in {r["uid"] for r in refs}
    assert sets[f"checkout-{STABLE_HASH}"]["spec"]["replicas"] == REPLICAS
    assert world.rest.get(ARGO_ROLLOUTS.url(world.ns, "checkout")) is not None
    assert_kubectl_names(cluster, world.ns, tmp_path)
    # Services select the same pods through Herdsman's label now.
    for svc in ("checkout", "checkout-canary"):
        selector = world.selector(svc)
        assert ARGO_HASH not in selector
        assert selector[LABEL_GROUP] == f"checkout-{STABLE_HASH}"

    # Run again (as after an import cut short): every write is idempotent, nothing moves.
    code, out, err = plugin("import", "checkout")
    assert code == 0, err
    assert "resuming" in out
    assert {p["metadata"]["uid"] for p in world.pods()} == before
    rollouts.wait_healthy(f"checkout-{STABLE_HASH}")

    # Argo's Rollout can go (uninstalling Argo deletes it): its former pods stay.
    world.rest.delete(ARGO_ROLLOUTS.url(world.ns, "checkout"))
    wait_until(
        lambda: world.rest.get(ARGO_ROLLOUTS.url(world.ns, "checkout")) is None,
        what="Argo Rollout deleted",
    )
    assert {p["metadata"]["uid"] for p in world.ready_pods()} == before

    # And the next release is Herdsman's: a canary from the adopted stable group.
    rollouts.set_image(IMAGE_V3)
    rollouts.wait_healthy("checkout-v003", timeout=90)
    assert rollouts.sizes()["checkout-v003"] == (REPLICAS, REPLICAS)
    assert not [line for line in operator.errors() if "TooManyRequests" not in line]


def assert_kubectl_names(cluster: Cluster, ns: str, cache: Path) -> None:
    """Both Rollout kinds side by side, as while migrating (the README's warning): kubectl
    resolves the plain name to Argo's, `hro` and the full name to Herdsman's. A fresh discovery
    cache, so that what kubectl cached before Argo's CRD came cannot decide."""

    def api_version(resource: str) -> str:
        return cluster.kubectl(
            "--cache-dir", str(cache), "-n", ns, "get", resource, "checkout",
            "-o", "jsonpath={.apiVersion}",
        )  # fmt: skip

    assert api_version("rollout") == "argoproj.io/v1alpha1"
    assert api_version("hro") == "herdsman.dev/v1alpha1"
    assert api_version("rollouts.herdsman.dev") == "herdsman.dev/v1alpha1"


def assert_still_argos(world: ArgoWorld) -> None:
    """Nothing adopted: every ReplicaSet is Argo's alone and its pods carry no label of ours
    (their status moves on as pods come up, so resourceVersions are no evidence)."""
    for rs in world.replica_sets().values():
        refs = rs["metadata"]["ownerReferences"]
        assert [r["apiVersion"] for r in refs] == ["argoproj.io/v1alpha1"]
        assert LABEL_GROUP not in rs["spec"]["template"]["metadata"]["labels"]
    for pod in world.pods():
        assert LABEL_GROUP not in pod["metadata"]["labels"]


def test_dry_run_prints_the_plan_and_changes_nothing(
    operator: OperatorProcess, world: ArgoWorld, plugin: Any
) -> None:
    world.lay_out()
    code, out, err = plugin("import", "checkout", "--dry-run")
    assert code == 0, err
    assert f"adopt ReplicaSet checkout-{STABLE_HASH} as server group revision 2 (stable" in out
    assert f"adopt ReplicaSet checkout-{OLD_HASH} as server group revision 1 (old" in out
    assert f"Service checkout: selector {ARGO_HASH}={STABLE_HASH}" in out
    assert world.rest.get(ROLLOUTS.url(world.ns, "checkout")) is None
    assert_still_argos(world)
    assert ARGO_HASH in world.selector("checkout")


def test_an_argo_rollout_mid_canary_is_refused_and_left_alone(
    operator: OperatorProcess, world: ArgoWorld, plugin: Any
) -> None:
    world.lay_out(mid_canary=True)
    sets_before = world.replica_set_writes()
    code, _out, err = plugin("import", "checkout")
    assert code == 1
    assert "in the middle of an update" in err
    assert "status.currentPodHash" in err
    assert "Traceback" not in err
    assert world.rest.get(ROLLOUTS.url(world.ns, "checkout")) is None
    after = world.replica_set_writes()
    assert after == sets_before


def test_importing_what_does_not_exist_says_so(world: ArgoWorld, plugin: Any) -> None:
    code, _, err = plugin("import", "nothing-here")
    assert code == 1
    assert "argoproj.io/v1alpha1 Rollout" in err
    assert "nothing-here not found" in err


def test_a_herdsman_rollout_of_the_same_name_is_not_overwritten(
    rollouts: Rollouts, world: ArgoWorld, plugin: Any
) -> None:
    from harness.rollouts import rollout

    world.lay_out()
    rollouts.create(rollout(replicas=1), with_services=False)
    code, _, err = plugin("import", "checkout")
    assert code == 1
    assert "already exists and was not imported" in err
    for rs in world.replica_sets().values():
        assert rs["metadata"]["ownerReferences"][0]["kind"] == "Rollout"
        assert rs["metadata"]["ownerReferences"][0]["apiVersion"] == "argoproj.io/v1alpha1"


def argo_controller_deployment() -> dict[str, Any]:
    """Argo's controller as its install.yaml labels it (the pause image stands in for it)."""
    labels = {
        "app.kubernetes.io/name": "argo-rollouts",
        "app.kubernetes.io/component": "rollouts-controller",
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "argo-rollouts", "labels": labels},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "argo-rollouts", "image": IMAGE_V1}]},
            },
        },
    }


def test_import_refuses_while_an_argo_controller_runs_and_force_goes_ahead_loudly(
    operator: OperatorProcess, rollouts: Rollouts, world: ArgoWorld, plugin: Any
) -> None:
    world.lay_out()
    ns = world.ns
    world.rest.create(DEPLOYMENTS.url(ns), argo_controller_deployment())
    try:
        code, _out, err = plugin("import", "checkout")
        assert code == 1
        assert "an Argo Rollouts controller is running" in err
        assert f"Deployment {ns}/argo-rollouts" in err
        assert "Traceback" not in err
        assert world.rest.get(ROLLOUTS.url(ns, "checkout")) is None
        assert_still_argos(world)

        # Scaled to 0, but its leader lease was renewed a moment ago: still running somewhere.
        world.rest.patch(DEPLOYMENTS.url(ns, "argo-rollouts"), {"spec": {"replicas": 0}})
        wait_until(
            lambda: (
                not (world.rest.get(DEPLOYMENTS.url(ns, "argo-rollouts")) or {})
                .get("status", {})
                .get("readyReplicas")
            ),
            what="the controller Deployment scaled to 0",
        )
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        world.rest.create(
            LEASES.url(ns),
            {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {"name": LEASE_NAME},
                "spec": {"holderIdentity": "argo-rollouts-1", "renewTime": now},
            },
        )
        code, _out, err = plugin("import", "checkout")
        assert code == 1
        assert f"Lease {ns}/{LEASE_NAME} renewed" in err

        code, out, err = plugin("import", "checkout", "--force")
        assert code == 0, err
        assert "WARNING: an Argo Rollouts controller is running" in err
        assert "imported" in out
        rollouts.wait_healthy(f"checkout-{STABLE_HASH}", timeout=60)
    finally:
        # Other imports in this run must not see a controller that was only this test's.
        world.rest.delete(LEASES.url(ns, LEASE_NAME))
        world.rest.delete(DEPLOYMENTS.url(ns, "argo-rollouts"))
