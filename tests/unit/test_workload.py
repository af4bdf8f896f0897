"""spec.workloadRef: the Deployment's template is the Rollout's, and the Deployment is scaled
down per scaleDown as Argo Rollouts does (engine.workload, pure)."""

from __future__ import annotations

import copy
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml
from sim import Sim, manifest

from herdsman.api.rollout import Rollout, RolloutStatus
from herdsman.cli.lint import lint_object
from herdsman.cli.main import main
from herdsman.engine.decide import decide
from herdsman.engine.workload import deployment_replicas, resolve

pytestmark = pytest.mark.unit


def deployment(image: str = "app:v1", replicas: int = 10, **labels: str) -> dict[str, Any]:
    labels = labels or {"app": "checkout"}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "checkout", "namespace": "shop", "generation": 3},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": dict(labels)},
            "template": {
                # What the API server returns: creationTimestamp is added to every template.
                "metadata": {"labels": dict(labels), "creationTimestamp": None},
                "spec": {"containers": [{"name": "app", "image": image}]},
            },
        },
    }


def ref_manifest(scale_down: str | None = None, *, selector: bool = False) -> dict[str, Any]:
    body = manifest()
    spec = body["spec"]
    del spec["template"]
    if not selector:
        del spec["selector"]
    spec["workloadRef"] = {"apiVersion": "apps/v1", "kind": "Deployment", "name": "checkout"}
    if scale_down:
        spec["workloadRef"]["scaleDown"] = scale_down
    return body


def test_the_template_and_selector_come_from_the_deployment() -> None:
    rollout, problems = resolve(Rollout.model_validate(ref_manifest()), deployment("app:v7"))
    assert problems == []
    assert rollout.spec.pod_template["spec"]["containers"][0]["image"] == "app:v7"
    assert rollout.spec.pod_template["metadata"]["labels"] == {"app": "checkout"}
    assert rollout.spec.match_labels == {"app": "checkout"}


def test_a_changed_deployment_template_is_a_new_revision() -> None:
    sim = Sim.of(ref_manifest())
    dep = deployment("app:v1")

    def reconcile() -> None:
        resolved, problems = resolve(sim.rollout, dep)
        assert problems == []
        body = copy.deepcopy(sim.body)
        sim.body = resolved.model_dump(by_alias=True, exclude_none=True, mode="json")
        sim.reconcile()
        status = sim.body["status"]
        sim.body = body
        sim.body["status"] = status

    for _ in range(5):
        reconcile()
        sim.settle()
    assert sim.status.phase == "Healthy"
    assert sim.status.current_revision == 1
    dep["spec"]["template"]["spec"]["containers"][0]["image"] = "app:v2"
    for _ in range(5):
        reconcile()
        sim.settle()
    assert sim.status.current_revision == 2
    assert sim.status.canary_server_group is not None  # the canary of the Deployment's edit


def test_a_missing_deployment_is_named() -> None:
    rollout = Rollout.model_validate(ref_manifest())
    _, problems = resolve(rollout, None)
    assert problems == ["spec.workloadRef.name: Deployment 'checkout' not found"]


def test_a_missing_deployment_holds_the_rollout_as_invalid_spec() -> None:
    sim = Sim.of(manifest())
    sim.reconcile()
    sim.settle()
    before = dict(sim.groups)
    rollout = Rollout.model_validate(ref_manifest())
    _, problems = resolve(rollout, None)
    sim.body["spec"] = ref_manifest()["spec"]
    decision = decide(sim.rollout, replace(sim.world(), workload_problems=tuple(problems)), sim.now)
    assert decision.status.phase == "Degraded"
    assert "spec.workloadRef.name" in decision.status.message
    assert not decision.desired.scale
    assert not decision.desired.create_groups
    assert sim.groups == before


def test_template_beside_workload_ref_is_refused_as_argo_does() -> None:
    body = ref_manifest(selector=True)
    body["spec"]["template"] = {"metadata": {"labels": {"app": "checkout"}}}
    _, problems = resolve(Rollout.model_validate(body), deployment())
    assert problems
    assert problems[0].startswith("spec.template: must be empty")


def test_a_selector_the_deployment_template_does_not_carry_is_refused() -> None:
    body = ref_manifest(selector=True)
    body["spec"]["selector"] = {"matchLabels": {"app": "other"}}
    _, problems = resolve(Rollout.model_validate(body), deployment())
    assert problems
    assert problems[0].startswith("spec.selector:")


def _status(**fields: Any) -> RolloutStatus:
    return RolloutStatus.model_validate(fields)


@pytest.mark.parametrize("scale_down", [None, "never"])
def test_never_leaves_the_deployment_alone(scale_down: str | None) -> None:
    rollout = Rollout.model_validate(ref_manifest(scale_down))
    assert deployment_replicas(rollout, _status(phase="Healthy", availableReplicas=10), 10) is None


def test_onsuccess_scales_to_zero_once_healthy() -> None:
    rollout = Rollout.model_validate(ref_manifest("onsuccess"))
    assert (
        deployment_replicas(rollout, _status(phase="Progressing", availableReplicas=8), 10) is None
    )
    assert deployment_replicas(rollout, _status(phase="Healthy", availableReplicas=10), 10) == 0
    assert deployment_replicas(rollout, _status(phase="Healthy", availableReplicas=10), 0) is None


def test_progressively_shrinks_as_the_rollout_becomes_available() -> None:
    rollout = Rollout.model_validate(ref_manifest("progressively"))
    assert (
        deployment_replicas(rollout, _status(phase="Progressing", availableReplicas=0), 10) is None
    )
    assert deployment_replicas(rollout, _status(phase="Progressing", availableReplicas=4), 10) == 6
    assert deployment_replicas(rollout, _status(phase="Healthy", availableReplicas=10), 6) == 0
    # A pod lost on the Rollout's side does not bring Deployment pods back...
    assert (
        deployment_replicas(rollout, _status(phase="Progressing", availableReplicas=8), 0) is None
    )
    # ...an abort does: capacity returns to the Deployment.
    assert deployment_replicas(rollout, _status(phase="Degraded", abort=True), 2) == 10


def test_lint_accepts_workload_ref_without_template_or_selector() -> None:
    body = ref_manifest("onsuccess")
    del body["metadata"]["generation"]
    assert lint_object(body).errors == []


def test_lint_refuses_a_rollout_with_neither_template_nor_workload_ref() -> None:
    body = manifest()
    del body["spec"]["template"]
    errors = lint_object(body).errors
    assert [e.path for e in errors] == ["spec.template"]


def test_lint_refuses_an_unknown_scale_down() -> None:
    body = ref_manifest("sometimes")
    errors = lint_object(body).errors
    assert [e.path for e in errors] == ["spec.workloadRef.scaleDown"]


def test_lint_warns_where_herdsman_differs_from_argo_and_exits_0(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    body = ref_manifest("onsuccess", selector=True)
    del body["metadata"]["generation"]
    body["spec"]["template"] = {"metadata": {"labels": {"app": "checkout"}}}
    body["spec"]["strategy"]["canary"]["canaryMetadata"] = {"labels": {"role": "canary"}}
    path = tmp_path / "rollout.yaml"
    path.write_text(yaml.safe_dump(body))
    assert main(["lint", "-f", str(path)]) == 0
    out = capsys.readouterr().out
    assert "valid" in out
    assert "  warning: spec.template: set beside workloadRef" in out
    assert "  warning: spec.strategy.canary.canaryMetadata: set on the role's running pods" in out


def test_lint_prints_no_warning_for_a_plain_rollout() -> None:
    body = manifest()
    del body["metadata"]["generation"]
    assert lint_object(body).warnings == []
