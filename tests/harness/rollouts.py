"""Rollouts on the real cluster: manifests, reads and waits, phrased the way tests speak."""

from __future__ import annotations

import copy
from typing import Any

from harness.cluster import Cluster, wait_until
from herdsman.cluster.kube import PODS, REPLICA_SETS, ROLLOUTS, SERVICES
from herdsman.naming import LABEL_ROLLOUT, label_value

IMAGE_V1 = "registry.k8s.io/pause:3.9"
IMAGE_V2 = "registry.k8s.io/pause:3.10"
IMAGE_V3 = "registry.k8s.io/pause:3.10.1"


def rollout(
    name: str = "checkout",
    *,
    replicas: int = 10,
    steps: list[dict[str, Any]] | None = None,
    image: str = IMAGE_V1,
    services: bool = True,
    **canary: Any,
) -> dict[str, Any]:
    strategy: dict[str, Any] = {
        "steps": steps if steps is not None else [{"setWeight": 20}, {"pause": {}}]
    }
    if services:
        strategy.update({"stableService": name, "canaryService": f"{name}-canary"})
    strategy.update(canary)
    return {
        "apiVersion": "herdsman.dev/v1alpha1",
        "kind": "Rollout",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "app", "image": image}]},
            },
            "strategy": {"canary": strategy},
        },
    }


def blue_green(
    name: str = "checkout",
    *,
    replicas: int = 4,
    image: str = IMAGE_V1,
    preview: bool = True,
    **strategy: Any,
) -> dict[str, Any]:
    """A blue/green Rollout: active service `name`, preview service `name-preview`."""
    body = rollout(name, replicas=replicas, image=image, services=False)
    bg: dict[str, Any] = {"activeService": name}
    if preview:
        bg["previewService"] = f"{name}-preview"
    bg.update(strategy)
    body["spec"]["strategy"] = {"blueGreen": bg}
    return body


def service(name: str, app: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name},
        "spec": {"selector": {"app": app}, "ports": [{"port": 80, "targetPort": 8080}]},
    }


class Rollouts:
    """Create, read and wait on rollouts in one test namespace."""

    def __init__(self, cluster: Cluster, namespace: str) -> None:
        self.cluster = cluster
        self.rest = cluster.rest
        self.ns = namespace

    def create(self, manifest: dict[str, Any], *, with_services: bool = True) -> dict[str, Any]:
        name = manifest["metadata"]["name"]
        canary = manifest["spec"]["strategy"].get("canary") or {}
        bg = manifest["spec"]["strategy"].get("blueGreen") or {}
        if with_services:
            for svc in (
                canary.get("stableService"),
                canary.get("canaryService"),
                canary.get("baselineService"),
                bg.get("activeService"),
                bg.get("previewService"),
            ):
                if svc and self.rest.get(SERVICES.url(self.ns, svc)) is None:
                    self.rest.create(SERVICES.url(self.ns), service(svc, name))
        return self.rest.create(ROLLOUTS.url(self.ns), copy.deepcopy(manifest))

    def get(self, name: str = "checkout") -> dict[str, Any]:
        body = self.rest.get(ROLLOUTS.url(self.ns, name))
        assert body is not None, f"rollout {name} vanished"
        return body

    def status(self, name: str = "checkout") -> dict[str, Any]:
        return self.get(name).get("status") or {}

    def groups(self, name: str = "checkout") -> dict[str, dict[str, Any]]:
        selector = f"{LABEL_ROLLOUT}={label_value(name)}"  # a long name's label is shortened
        items = self.rest.list(REPLICA_SETS.url(self.ns), labels=selector)
        return {rs["metadata"]["name"]: rs for rs in items}

    def sizes(self, name: str = "checkout") -> dict[str, tuple[int, int]]:
        """Group -> (spec replicas, available)."""
        return {
            n: (
                rs["spec"].get("replicas", 0),
                (rs.get("status") or {}).get("availableReplicas", 0) or 0,
            )
            for n, rs in self.groups(name).items()
        }

    def settled_sizes(
        self, name: str = "checkout", timeout: float = 30.0
    ) -> dict[str, tuple[int, int]]:
        """`sizes()` once every group has as many pods available as it asks for.

        A phase can be reached while a group's status still counts pods that are going away;
        a snapshot taken then would differ from the same, unchanged world a second later.
        """
        return wait_until(
            lambda: (lambda s: s if all(want == have for want, have in s.values()) else None)(
                self.sizes(name)
            ),
            timeout=timeout,
            what="every server group settled",
            describe=lambda: str(self.sizes(name)),
        )

    def pods(self, name: str = "checkout") -> list[dict[str, Any]]:
        return self.rest.list(PODS.url(self.ns), labels=f"{LABEL_ROLLOUT}={label_value(name)}")

    def selector(self, service_name: str) -> dict[str, str]:
        body = self.rest.get(SERVICES.url(self.ns, service_name))
        assert body is not None
        return dict(body["spec"].get("selector") or {})

    def set_image(self, image: str, name: str = "checkout") -> None:
        body = self.get(name)
        containers = body["spec"]["template"]["spec"]["containers"]
        containers[0]["image"] = image
        self.rest.patch(
            ROLLOUTS.url(self.ns, name), {"spec": {"template": body["spec"]["template"]}}
        )

    def wait(
        self,
        predicate: Any,
        *,
        name: str = "checkout",
        timeout: float = 60.0,
        what: str = "rollout state",
    ) -> dict[str, Any]:
        return wait_until(
            lambda: (lambda s: s if predicate(s) else None)(self.status(name)),
            timeout=timeout,
            what=what,
            describe=lambda: f"status={self.status(name)} groups={self.sizes(name)}",
        )

    def wait_phase(
        self, phase: str, *, name: str = "checkout", timeout: float = 60.0, step: str | None = None
    ) -> dict[str, Any]:
        return self.wait(
            lambda s: s.get("phase") == phase and (step is None or s.get("step") == step),
            name=name,
            timeout=timeout,
            what=f"phase {phase}" + (f" at step {step}" if step else ""),
        )

    def wait_healthy(
        self, group: str, *, name: str = "checkout", timeout: float = 60.0
    ) -> dict[str, Any]:
        return self.wait(
            lambda s: s.get("phase") == "Healthy" and s.get("stableServerGroup") == group,
            name=name,
            timeout=timeout,
            what=f"{group} healthy and stable",
        )
