"""Bad Rollouts are refused by the real API server, naming the field, and lint agrees with it.

Each case is one mistake a person makes. It is submitted to the API server the way kubectl does
by default (strict field validation) and must be refused with the offending field named; the
same manifest through `kubectl herdsman lint` must be refused naming the same field, and the two
must report the same set of fields. A rule that exists in one place only shows up here.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
import yaml

from harness.cluster import Cluster
from harness.rollouts import rollout
from herdsman.cli.lint import lint_object
from herdsman.cli.main import main
from herdsman.cluster.kube import ROLLOUTS

pytestmark = pytest.mark.e2e

Manifest = dict[str, Any]
CANARY = "spec.strategy.canary"


@dataclass(frozen=True)
class Case:
    id: str
    field: str  # the path both the API server and lint must name
    change: Callable[[Manifest], Any]

    def manifest(self) -> Manifest:
        body = rollout(replicas=3)
        self.change(body)
        return body


def canary(m: Manifest) -> dict[str, Any]:
    strategy: dict[str, Any] = m["spec"]["strategy"]["canary"]
    return strategy


def steps(*given: dict[str, Any]) -> Callable[[Manifest], None]:
    return lambda m: canary(m).update(steps=list(given))


def routed(m: Manifest) -> dict[str, Any]:
    c = canary(m)
    c["trafficRouting"] = {"gatewayAPI": {"httpRoute": "web"}, "managedRoutes": [{"name": "beta"}]}
    return c


def labels(m: Manifest) -> dict[str, str]:
    found: dict[str, str] = m["spec"]["template"]["metadata"]["labels"]
    return found


def container(m: Manifest) -> dict[str, Any]:
    found: dict[str, Any] = m["spec"]["template"]["spec"]["containers"][0]
    return found


_ABORT = {"abort": {"httpStatus": 503, "percentage": {"value": 10}}}


def _background_chaos(**fields: Any) -> dict[str, Any]:
    """Background analysis with a chaos option (analysis.chaos); None drops a field."""
    chaos = {"action": "killPods", "percent": 50, "duration": "30s", "startingStep": 1}
    chaos.update(fields)
    return {
        "templates": [{"templateName": "t"}],
        "chaos": {k: v for k, v in chaos.items() if v is not None},
    }


CASES = [
    Case(
        "both strategies",
        "spec.strategy",
        lambda m: m["spec"]["strategy"].update(blueGreen={"activeService": "web"}),
    ),
    Case("neither strategy", "spec.strategy", lambda m: m["spec"].update(strategy={})),
    Case("a step with two kinds", f"{CANARY}.steps[0]", steps({"setWeight": 10, "pause": {}})),
    Case("an empty step", f"{CANARY}.steps[1]", steps({"setWeight": 10}, {})),
    Case("setWeight 101", f"{CANARY}.steps", steps({"setWeight": 101})),
    Case(
        "setWeight beyond maxTrafficWeight",
        f"{CANARY}.steps",
        lambda m: canary(m).update(
            steps=[{"setWeight": 300}],
            trafficRouting={"nginx": {"stableIngress": "web"}, "maxTrafficWeight": 200},
        ),
    ),
    Case(
        "a replicaProgressThreshold of an unknown type",
        f"{CANARY}.replicaProgressThreshold.type",
        lambda m: canary(m).update(replicaProgressThreshold={"type": "Percentage", "value": 9}),
    ),
    Case(
        "maxTrafficWeight with a router other than nginx",
        f"{CANARY}.trafficRouting.maxTrafficWeight",
        lambda m: routed(m)["trafficRouting"].update(maxTrafficWeight=1000),
    ),
    Case("setWeight -1", f"{CANARY}.steps[0].setWeight", steps({"setWeight": -1})),
    Case(
        "a duration in words",
        f"{CANARY}.steps[1].pause.duration",
        steps({"setWeight": 10}, {"pause": {"duration": "5 minutes"}}),
    ),
    Case(
        "a negative duration",
        f"{CANARY}.steps[0].pause.duration",
        steps({"pause": {"duration": -30}}),
    ),
    Case(
        "an empty selector",
        "spec.selector",
        lambda m: m["spec"]["selector"].update(matchLabels={}),
    ),
    Case(
        "a selector with nothing in it",
        "spec.selector",
        lambda m: m["spec"].update(selector={}),
    ),
    Case(
        "selector.matchExpressions the template labels do not meet",
        "spec.selector.matchExpressions",
        lambda m: m["spec"]["selector"].update(
            matchExpressions=[{"key": "tier", "operator": "In", "values": ["web"]}]
        ),
    ),
    Case(
        "an In requirement without values",
        "spec.selector.matchExpressions[0].values",
        lambda m: (
            m["spec"]["selector"].update(matchExpressions=[{"key": "app", "operator": "In"}]),
        ),
    ),
    Case(
        "an unknown selector operator",
        "spec.selector.matchExpressions[0].operator",
        lambda m: m["spec"]["selector"].update(
            matchExpressions=[{"key": "app", "operator": "Like", "values": ["x"]}]
        ),
    ),
    Case(
        "template labels missing a selector label",
        "spec.template.metadata.labels",
        lambda m: m["spec"]["template"]["metadata"].update(labels={"tier": "web"}),
    ),
    Case(
        "template label with another value",
        "spec.template.metadata.labels",
        lambda m: labels(m).update(app="other"),
    ),
    Case(
        "a herdsman.dev/ selector label",
        "spec.selector",
        lambda m: (
            m["spec"]["selector"]["matchLabels"].update({"herdsman.dev/revision": "1"}),
            labels(m).update({"herdsman.dev/revision": "1"}),
        ),
    ),
    Case(
        "a label value that is not a label",
        "spec.template.metadata.labels.app",
        lambda m: (
            m["spec"]["selector"]["matchLabels"].update(app="check out"),
            labels(m).update(app="check out"),
        ),
    ),
    Case(
        "missing containers",
        "spec.template.spec.containers",
        lambda m: m["spec"]["template"]["spec"].pop("containers"),
    ),
    Case(
        "empty containers",
        "spec.template.spec.containers",
        lambda m: m["spec"]["template"]["spec"].update(containers=[]),
    ),
    Case(
        "a container without an image",
        "spec.template.spec.containers[0].image",
        lambda m: container(m).pop("image"),
    ),
    Case(
        "a container name too long",
        "spec.template.spec.containers[0].name",
        lambda m: container(m).update(name="c" * 64),
    ),
    Case("replicas < 0", "spec.replicas", lambda m: m["spec"].update(replicas=-1)),
    Case("replicas as words", "spec.replicas", lambda m: m["spec"].update(replicas="three")),
    Case(
        "an unknown field",
        f"{CANARY}.surge",
        lambda m: canary(m).update(surge="25%"),
    ),
    Case(
        "a misspelt step kind",
        f"{CANARY}.steps[0].setweight",
        steps({"setweight": 20}),
    ),
    Case(
        "a bad maxSurge string", f"{CANARY}.maxSurge", lambda m: canary(m).update(maxSurge="lots")
    ),
    Case("a negative maxSurge", f"{CANARY}.maxSurge", lambda m: canary(m).update(maxSurge=-1)),
    Case(
        "maxSurge and maxUnavailable both 0",
        f"{CANARY}.maxUnavailable",
        lambda m: canary(m).update(maxSurge=0, maxUnavailable=0),
    ),
    Case(
        "maxSurge and maxUnavailable both 0%",
        f"{CANARY}.maxUnavailable",
        lambda m: canary(m).update(maxSurge="0%", maxUnavailable="0%"),
    ),
    Case(
        "startingStep beyond the steps",
        f"{CANARY}.analysis.startingStep",
        lambda m: canary(m).update(
            analysis={"templates": [{"templateName": "errors"}], "startingStep": 3}
        ),
    ),
    Case(
        "setHeaderRoute without trafficRouting",
        f"{CANARY}.steps",
        steps({"setHeaderRoute": {"name": "beta"}}),
    ),
    Case(
        "setMirrorRoute without trafficRouting",
        f"{CANARY}.steps",
        steps({"setMirrorRoute": {"name": "beta"}}),
    ),
    Case(
        "setCanaryScale without trafficRouting",
        f"{CANARY}.steps",
        steps({"setCanaryScale": {"replicas": 1}}),
    ),
    Case(
        "setCanaryScale with two fields",
        f"{CANARY}.steps[0].setCanaryScale",
        lambda m: routed(m).update(steps=[{"setCanaryScale": {"replicas": 1, "weight": 10}}]),
    ),
    Case(
        "a header match with two kinds",
        f"{CANARY}.steps[0].setHeaderRoute.match[0].headerValue",
        lambda m: routed(m).update(
            steps=[
                {
                    "setHeaderRoute": {
                        "name": "beta",
                        "match": [
                            {"headerName": "x-beta", "headerValue": {"exact": "1", "prefix": "1"}}
                        ],
                    }
                }
            ]
        ),
    ),
    Case(
        "baseline with setWeight over 50",
        f"{CANARY}.steps",
        lambda m: canary(m).update(baseline=True, steps=[{"setWeight": 60}]),
    ),
    Case(
        "a baselineService without baseline",
        f"{CANARY}.baselineService",
        lambda m: canary(m).update(baselineService="web-baseline"),
    ),
    Case(
        "a baseline behind a router without a baselineService",
        f"{CANARY}.baselineService",
        lambda m: routed(m).update(baseline=True),
    ),
    Case(
        # Several routers at once are valid (as in Argo); none at all is not.
        "trafficRouting with no router",
        f"{CANARY}.trafficRouting",
        lambda m: routed(m).update(trafficRouting={}),
    ),
    Case(
        "trafficRouting without a canaryService",
        f"{CANARY}.trafficRouting",
        lambda m: routed(m).pop("canaryService"),
    ),
    Case(
        "a service name that is not DNS-1035",
        f"{CANARY}.canaryService",
        lambda m: canary(m).update(canaryService="Checkout_Canary"),
    ),
    Case(
        "an analysis step without templates",
        f"{CANARY}.steps[0].analysis.templates",
        steps({"analysis": {}}),
    ),
    Case(
        "an analysis step with no template in the list",
        f"{CANARY}.steps[0].analysis.templates",
        steps({"analysis": {"templates": []}}),
    ),
    Case(
        "an analysis argument with value and valueFrom",
        f"{CANARY}.steps[0].analysis.args[0]",
        steps(
            {
                "analysis": {
                    "templates": [{"templateName": "errors"}],
                    "args": [
                        {
                            "name": "svc",
                            "value": "x",
                            "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}},
                        }
                    ],
                }
            }
        ),
    ),
    Case(
        "a podTemplateHashValue that is neither Stable nor Latest",
        f"{CANARY}.steps[0].analysis.args[0].valueFrom.podTemplateHashValue",
        steps(
            {
                "analysis": {
                    "templates": [{"templateName": "errors"}],
                    "args": [{"name": "h", "valueFrom": {"podTemplateHashValue": "Canary"}}],
                }
            }
        ),
    ),
    Case(
        "an analysis argument with two sources",
        f"{CANARY}.steps[0].analysis.args[0].valueFrom",
        steps(
            {
                "analysis": {
                    "templates": [{"templateName": "errors"}],
                    "args": [
                        {
                            "name": "h",
                            "valueFrom": {
                                "podTemplateHashValue": "Stable",
                                "fieldRef": {"fieldPath": "metadata.name"},
                            },
                        }
                    ],
                }
            }
        ),
    ),
    Case("too many steps", f"{CANARY}.steps", steps(*[{"setWeight": 1}] * 65)),
    Case(
        "revisionHistoryLimit over 100",
        "spec.revisionHistoryLimit",
        lambda m: m["spec"].update(revisionHistoryLimit=101),
    ),
    Case(
        "a zero progress deadline",
        "spec.progressDeadlineSeconds",
        lambda m: m["spec"].update(progressDeadlineSeconds=0),
    ),
    Case(
        "restartAt that is not a time",
        "spec.restartAt",
        lambda m: m["spec"].update(restartAt="yesterday"),
    ),
    Case(
        "blueGreen previewService equal to activeService",
        "spec.strategy.blueGreen.previewService",
        lambda m: m["spec"].update(
            strategy={"blueGreen": {"activeService": "web", "previewService": "web"}}
        ),
    ),
    Case(
        "blueGreen without activeService",
        "spec.strategy.blueGreen.activeService",
        lambda m: m["spec"].update(strategy={"blueGreen": {"previewService": "web-preview"}}),
    ),
    Case(
        "a chaos step with no analysis to judge it",
        f"{CANARY}.analysis",
        steps(
            {"setWeight": 20}, {"chaos": {"action": "killPods", "percent": 50, "duration": "30s"}}
        ),
    ),
    Case(
        "a chaos step killing over 100 percent",
        f"{CANARY}.steps[0].chaos.percent",
        lambda m: canary(m).update(
            analysis={"templates": [{"templateName": "t"}]},
            steps=[{"chaos": {"action": "killPods", "percent": 101, "duration": "30s"}}],
        ),
    ),
    Case(
        "a chaos httpFault without the Istio router",
        f"{CANARY}.trafficRouting",
        lambda m: canary(m).update(
            analysis={"templates": [{"templateName": "t"}]},
            steps=[{"chaos": {"action": "httpFault", "duration": "30s", "httpFault": _ABORT}}],
        ),
    ),
    Case(
        "a chaos httpFault aborting over 100 percent",
        f"{CANARY}.steps[0].chaos.httpFault.abort.percentage.value",
        lambda m: canary(m).update(
            analysis={"templates": [{"templateName": "t"}]},
            trafficRouting={"istio": {"virtualService": {"name": "web"}}},
            steps=[
                {
                    "chaos": {
                        "action": "httpFault",
                        "duration": "30s",
                        "httpFault": {"abort": {"httpStatus": 503, "percentage": {"value": 101}}},
                    }
                }
            ],
        ),
    ),
    Case(
        "a background chaos fault killing over 100 percent",
        f"{CANARY}.analysis.chaos.percent",
        lambda m: canary(m).update(analysis=_background_chaos(percent=101)),
    ),
    Case(
        "a background chaos killPods without percent",
        f"{CANARY}.analysis.chaos.percent",
        lambda m: canary(m).update(analysis=_background_chaos(percent=None)),
    ),
    Case(
        "a background chaos httpFault without the Istio router",
        f"{CANARY}.analysis.chaos.httpFault",
        lambda m: canary(m).update(
            analysis=_background_chaos(percent=None, action="httpFault", httpFault=_ABORT)
        ),
    ),
    Case(
        "a background chaos starting past the last step",
        f"{CANARY}.analysis.chaos.startingStep",
        lambda m: canary(m).update(analysis=_background_chaos(startingStep=2)),
    ),
    Case(
        "a background chaos starting before its analysis",
        f"{CANARY}.analysis.chaos.startingStep",
        lambda m: canary(m).update(
            analysis={**_background_chaos(startingStep=0), "startingStep": 1}
        ),
    ),
    Case(
        "a background chaos beside a chaos step",
        f"{CANARY}.analysis.chaos",
        lambda m: canary(m).update(
            analysis=_background_chaos(),
            steps=[
                {"setWeight": 20},
                {"chaos": {"action": "killPods", "percent": 50, "duration": "30s"}},
            ],
        ),
    ),
    Case(
        "a traffic router plugin Herdsman does not carry out",
        f"{CANARY}.trafficRouting.plugins",
        lambda m: canary(m).update(
            trafficRouting={"plugins": {"argoproj-labs/contour": {"httpProxy": "web"}}}
        ),
    ),
    Case(
        "both gatewayAPI and Argo's Gateway API plugin block",
        f"{CANARY}.trafficRouting.plugins",
        lambda m: canary(m).update(
            trafficRouting={
                "gatewayAPI": {"httpRoute": "web"},
                "plugins": {"argoproj-labs/gatewayAPI": {"httpRoute": "web"}},
            }
        ),
    ),
    Case(
        "ambassador without mappings",
        f"{CANARY}.trafficRouting.ambassador.mappings",
        lambda m: canary(m).update(trafficRouting={"ambassador": {"mappings": []}}),
    ),
    Case(
        "appMesh without its virtual nodes",
        f"{CANARY}.trafficRouting.appMesh.virtualNodeGroup",
        lambda m: canary(m).update(trafficRouting={"appMesh": {"virtualService": {"name": "web"}}}),
    ),
]


@dataclass(frozen=True)
class Refusal:
    status: int
    fields: set[str]
    messages: dict[str, str]  # field -> "field: message" as the API server words it
    text: str


def submit(cluster: Cluster, namespace: str, body: Manifest) -> Refusal | None:
    """POST as kubectl does by default (strict field validation); the refusal's details."""
    api = cluster.rest.api
    method, url, headers, data, post = api.param_serialize(
        "POST",
        ROLLOUTS.url(namespace),
        query_params=[("fieldValidation", "Strict")],
        header_params={"Accept": "application/json", "Content-Type": "application/json"},
        body=body,
        auth_settings=["BearerToken"],
    )
    response = api.call_api(method, url, headers, data, post, _request_timeout=20)
    payload = json.loads(response.read())
    if response.status < 400:
        return None
    causes = (payload.get("details") or {}).get("causes") or []
    fields: set[str] = set()
    messages: dict[str, str] = {}
    for cause in causes:
        field = str(cause.get("field", "")).lstrip(".")
        if not field or field == "<nil>":
            continue  # "some validation rules were not checked": not about a field
        fields.add(field)
        messages.setdefault(field, f"{field}: {cause.get('message', '')}")
    text = str(payload.get("message", ""))
    marker = 'unknown field "'
    if not causes and marker in text:
        # Strict decoding refuses before validation and names the field only in its message.
        for part in text.split(marker)[1:]:
            fields.add(part.split('"', 1)[0])
    return Refusal(int(response.status), fields, messages, text)


def test_there_are_at_least_twenty_distinct_cases() -> None:
    assert len({c.id for c in CASES}) == len(CASES) >= 20
    bodies = {json.dumps(c.manifest(), sort_keys=True) for c in CASES}
    assert len(bodies) == len(CASES)


def test_the_unchanged_manifest_is_accepted(cluster: Cluster, namespace: str) -> None:
    """The baseline every case changes must itself be valid, or the cases prove nothing."""
    body = rollout(replicas=3)
    assert lint_object(body).errors == []
    assert submit(cluster, namespace, body) is None


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_refused_by_the_api_server_and_by_lint_naming_the_same_field(
    cluster: Cluster, namespace: str, case: Case
) -> None:
    body = case.manifest()
    refusal = submit(cluster, namespace, body)
    assert refusal is not None, f"the API server accepted {case.id!r}"
    assert refusal.status in (400, 422), refusal.text
    assert case.field in refusal.fields, f"server named {refusal.fields}: {refusal.text}"

    linted = lint_object(body).errors
    lint_fields = {e.path for e in linted}
    assert case.field in lint_fields, [str(e) for e in linted]
    # Agreement: the same fields, not just the one this case is about.
    assert lint_fields == refusal.fields, f"lint {lint_fields} vs server {refusal.fields}"
    # And the same words, where the server gave them per field.
    if case.field in refusal.messages:
        ours = [str(e) for e in linted if e.path == case.field]
        assert refusal.messages[case.field] in ours, (ours, refusal.messages[case.field])


def test_kubectl_apply_and_the_plugin_refuse_the_same_file(
    cluster: Cluster, namespace: str, tmp_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """The user's path: `kubectl apply --server-side -f` and `kubectl herdsman lint -f`."""
    bad = rollout(replicas=3, steps=[{"setWeight": 20}, {"pause": {"duration": "soon"}}])
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(bad))
    err = cluster.kubectl("apply", "--server-side", "-n", namespace, "-f", str(path), check=False)
    field = f"{CANARY}.steps[1].pause.duration"
    assert f'{field}: Invalid value: "soon"' in err
    assert main(["lint", "-f", str(path)]) == 1
    assert f'  {field}: Invalid value: "soon"' in capsys.readouterr().out


def test_lint_also_refuses_what_only_the_operator_would_catch(
    cluster: Cluster, namespace: str
) -> None:
    """The same Service for stable and canary passes the API server on purpose (the operator
    reports InvalidSpec and holds); lint says so before the apply."""
    body = rollout(replicas=3)
    canary(body)["canaryService"] = canary(body)["stableService"]
    assert submit(cluster, namespace, body) is None
    assert [str(e) for e in lint_object(body).errors] == [
        f'{CANARY}.canaryService: Invalid value: "checkout": must differ from stableService'
    ]
