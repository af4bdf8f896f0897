"""`spec.selector.matchExpressions`, as Argo Rollouts (and Kubernetes) read it: accepted,
required to match the template's labels (refused naming the field otherwise), carried to every
server group's selector and to `status.selector`, and honoured for workloadRef Deployments."""

from __future__ import annotations

from typing import Any

import pytest
from sim import Sim, manifest

from herdsman.api.base import LabelSelector
from herdsman.api.rollout import Rollout
from herdsman.cli.lint import lint_object
from herdsman.cluster.apply import replica_set
from herdsman.engine.validation import spec_problems
from herdsman.engine.workload import resolve
from herdsman.engine.world import NewGroup
from herdsman.naming import LABEL_GROUP

pytestmark = pytest.mark.unit

EXPRESSIONS = [
    {"key": "tier", "operator": "In", "values": ["web", "edge"]},
    {"key": "legacy", "operator": "DoesNotExist"},
    {"key": "team", "operator": "Exists"},
    {"key": "track", "operator": "NotIn", "values": ["canary-only"]},
]


def with_expressions(
    expressions: list[dict[str, Any]] | None = None, labels: dict[str, str] | None = None
) -> dict[str, Any]:
    body = manifest()
    body["spec"]["selector"]["matchExpressions"] = (
        EXPRESSIONS if expressions is None else expressions
    )
    body["spec"]["template"]["metadata"]["labels"] = (
        labels if labels is not None else {"app": "checkout", "tier": "web", "team": "shop"}
    )
    return body


def paths(body: dict[str, Any]) -> list[str]:
    return [e.path for e in lint_object(body).errors]


def test_requirements_match_as_kubernetes_defines_them() -> None:
    sel = LabelSelector.model_validate(
        {"matchLabels": {"app": "a"}, "matchExpressions": EXPRESSIONS}
    )
    assert sel.matches({"app": "a", "tier": "edge", "team": "x"})
    assert not sel.matches({"app": "a", "tier": "db", "team": "x"})  # In
    assert not sel.matches({"app": "a", "tier": "web"})  # Exists
    assert not sel.matches({"app": "a", "tier": "web", "team": "x", "legacy": ""})  # DoesNotExist
    assert not sel.matches({"app": "a", "tier": "web", "team": "x", "track": "canary-only"})
    assert not sel.matches({"app": "b", "tier": "web", "team": "x"})  # matchLabels too
    assert str(sel) == "app=a,tier in (edge,web),!legacy,team,track notin (canary-only)"


def test_a_selector_with_expressions_that_the_template_meets_is_valid() -> None:
    assert paths(with_expressions()) == []
    only = with_expressions()
    del only["spec"]["selector"]["matchLabels"]
    assert paths(only) == []


@pytest.mark.parametrize(
    "labels",
    [
        {"app": "checkout", "tier": "db", "team": "shop"},  # In: another value
        {"app": "checkout", "team": "shop"},  # In: key missing
        {"app": "checkout", "tier": "web"},  # Exists
        {"app": "checkout", "tier": "web", "team": "shop", "legacy": "yes"},  # DoesNotExist
        {"app": "checkout", "tier": "web", "team": "shop", "track": "canary-only"},  # NotIn
    ],
)
def test_a_template_outside_the_expressions_is_refused_naming_the_field(
    labels: dict[str, str],
) -> None:
    assert paths(with_expressions(labels=labels)) == ["spec.selector.matchExpressions"]
    # The operator holds such a Rollout (stored before the rule) as InvalidSpec too.
    rollout = Rollout.model_validate(with_expressions(labels=labels))
    assert [p.path for p in spec_problems(rollout)] == ["spec.selector"]


@pytest.mark.parametrize(
    ("expression", "path"),
    [
        ({"key": "tier", "operator": "In"}, "spec.selector.matchExpressions[0].values"),
        (
            {"key": "tier", "operator": "In", "values": []},
            "spec.selector.matchExpressions[0].values",
        ),
        (
            {"key": "team", "operator": "Exists", "values": ["x"]},
            "spec.selector.matchExpressions[0].values",
        ),
        (
            {"key": "tier", "operator": "Like", "values": ["web"]},
            "spec.selector.matchExpressions[0].operator",
        ),
        (
            {"key": "herdsman.dev/revision", "operator": "Exists"},
            "spec.selector",
        ),
    ],
)
def test_malformed_requirements_are_refused_naming_the_field(
    expression: dict[str, Any], path: str
) -> None:
    labels = {"app": "checkout", "tier": "web", "team": "shop", "herdsman.dev/revision": "1"}
    assert path in paths(with_expressions([expression], labels=labels))


def test_an_empty_selector_is_refused() -> None:
    body = manifest()
    body["spec"]["selector"] = {}
    assert paths(body) == ["spec.selector"]


def test_every_server_group_selects_with_the_expressions_and_status_says_so() -> None:
    sim = Sim.of(with_expressions())
    sim.run_until(lambda s: s.status.phase == "Healthy")
    rollout = sim.rollout
    assert sim.status.selector == (
        "app=checkout,tier in (edge,web),!legacy,team,track notin (canary-only)"
    )
    group = NewGroup(
        name="checkout-v001",
        revision=1,
        pod_hash="abc",
        kind="release",
        replicas=10,
        template=rollout.spec.pod_template,
    )
    rs = replica_set(rollout, group, rollout.spec.pod_template)
    selector = rs["spec"]["selector"]
    assert selector["matchExpressions"] == EXPRESSIONS_WIRE
    assert selector["matchLabels"] == {"app": "checkout", LABEL_GROUP: "checkout-v001"}
    # The ReplicaSet's own pods meet its selector (the API server refuses it otherwise).
    labels = rs["spec"]["template"]["metadata"]["labels"]
    assert LabelSelector.model_validate(selector).matches(labels)


EXPRESSIONS_WIRE = [{**e, "values": e.get("values", [])} for e in EXPRESSIONS]


def deployment(labels: dict[str, str], selector: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "checkout"},
        "spec": {
            "replicas": 3,
            "selector": selector,
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "app", "image": "app:v1"}]},
            },
        },
    }


def ref_rollout() -> Rollout:
    body = manifest()
    del body["spec"]["template"], body["spec"]["selector"]
    body["spec"]["workloadRef"] = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "checkout",
    }
    return Rollout.model_validate(body)


def test_a_workload_refs_deployment_selector_with_expressions_is_taken_and_checked() -> None:
    selector = {"matchLabels": {"app": "checkout"}, "matchExpressions": EXPRESSIONS[:1]}
    resolved, problems = resolve(
        ref_rollout(), deployment({"app": "checkout", "tier": "web"}, selector)
    )
    assert problems == []
    assert resolved.spec.selector is not None
    assert resolved.spec.selector.match_expressions[0].key == "tier"
    _, problems = resolve(ref_rollout(), deployment({"app": "checkout", "tier": "db"}, selector))
    assert len(problems) == 1
    assert problems[0].startswith("spec.selector: ")
