"""Experiments on the real control plane: on their own, and as a canary's `experiment` step.

The analyses measure a local HTTP endpoint (the web provider) whose answer the test sets, so a
passing and a failing experiment differ only in what that endpoint says.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from harness.cluster import wait_until
from harness.local_http import LocalHttpServer, Reply, Request
from harness.operator import OperatorProcess
from harness.rollouts import IMAGE_V1, IMAGE_V2, Rollouts, rollout
from herdsman.cluster.experiment_paths import EXPERIMENTS
from herdsman.cluster.kube import ANALYSIS_RUNS, ANALYSIS_TEMPLATES, PODS, REPLICA_SETS, KubeError

pytestmark = pytest.mark.e2e


class Endpoint:
    """What the analyses measure: {"errors": N}, and the hashes they were asked about."""

    def __init__(self) -> None:
        self.errors = 0
        self.server = LocalHttpServer({"/errors": self.answer})

    def answer(self, request: Request) -> Reply:
        return Reply(200, {"errors": self.errors})

    def hashes(self) -> set[str]:
        return {h for r in self.server.requests for h in r.query.get("hash", [])}


def errors(operator: OperatorProcess) -> list[str]:
    """The operator's error lines, but Kopf's retried watch requests while the API server's
    storage for freshly installed CRDs is still initialising (429, retried by Kopf)."""
    return [line for line in operator.errors() if "TooManyRequests" not in line]


@pytest.fixture
def endpoint() -> Iterator[Endpoint]:
    e = Endpoint()
    e.server.start()
    yield e
    e.server.stop()


def analysis_template(rollouts: Rollouts, endpoint: Endpoint, name: str = "errors") -> None:
    rollouts.rest.create(
        ANALYSIS_TEMPLATES.url(rollouts.ns),
        {
            "apiVersion": "herdsman.dev/v1alpha1",
            "kind": "AnalysisTemplate",
            "metadata": {"name": name},
            "spec": {
                "args": [{"name": "hash"}],
                "metrics": [
                    {
                        "name": "errors",
                        "interval": "1s",
                        "count": 2,
                        "successCondition": "result < 1",
                        "provider": {
                            "web": {
                                "url": endpoint.server.url("/errors?hash={{args.hash}}"),
                                "jsonPath": "{$.errors}",
                            }
                        },
                    }
                ],
            },
        },
    )


def pod_template(app: str, image: str = IMAGE_V1) -> dict[str, Any]:
    return {
        "metadata": {"labels": {"app": app}},
        "spec": {"containers": [{"name": "app", "image": image}]},
    }


def experiment(name: str = "exp", **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "templates": [
            {
                "name": "baseline",
                "replicas": 2,
                "selector": {"matchLabels": {"app": "demo"}},
                "template": pod_template("demo"),
            },
            {
                "name": "canary",
                "replicas": 1,
                "selector": {"matchLabels": {"app": "demo"}},
                "template": pod_template("demo", IMAGE_V2),
            },
        ],
        "scaleDownDelaySeconds": 1,
        **spec,
    }
    return {
        "apiVersion": "herdsman.dev/v1alpha1",
        "kind": "Experiment",
        "metadata": {"name": name},
        "spec": body,
    }


class Experiments:
    def __init__(self, rollouts: Rollouts) -> None:
        self.rest = rollouts.rest
        self.ns = rollouts.ns

    def create(self, body: dict[str, Any]) -> dict[str, Any]:
        return self.rest.create(EXPERIMENTS.url(self.ns), body)

    def get(self, name: str) -> dict[str, Any] | None:
        return self.rest.get(EXPERIMENTS.url(self.ns, name))

    def status(self, name: str) -> dict[str, Any]:
        body = self.get(name)
        return (body or {}).get("status") or {}

    def wait_phase(self, name: str, *phases: str, timeout: float = 60.0) -> dict[str, Any]:
        return wait_until(
            lambda: (lambda s: s if s.get("phase") in phases else None)(self.status(name)),
            timeout=timeout,
            what=f"experiment {name} {'/'.join(phases)}",
            describe=lambda: f"status={self.status(name)}",
        )

    def replica_sets(self, name: str) -> dict[str, dict[str, Any]]:
        items = self.rest.list(REPLICA_SETS.url(self.ns), labels=f"herdsman.dev/experiment={name}")
        return {rs["metadata"]["name"]: rs for rs in items}


@pytest.fixture
def experiments(rollouts: Rollouts) -> Experiments:
    return Experiments(rollouts)


# --- an Experiment on its own ------------------------------------------------------------------


def test_an_experiment_runs_its_templates_and_analysis_then_scales_down(
    operator: OperatorProcess, rollouts: Rollouts, experiments: Experiments, endpoint: Endpoint
) -> None:
    analysis_template(rollouts, endpoint)
    created = experiments.create(
        experiment(
            duration="4s",
            analyses=[
                {
                    "name": "errors",
                    "templateName": "errors",
                    "args": [{"name": "hash", "value": "{{templates.canary.podTemplateHash}}"}],
                }
            ],
        )
    )
    running = experiments.wait_phase("exp", "Running")
    assert running["availableAt"]
    sets = experiments.replica_sets("exp")
    assert set(sets) == {"exp-baseline", "exp-canary"}
    for rs in sets.values():
        owner = rs["metadata"]["ownerReferences"][0]
        assert (owner["kind"], owner["uid"]) == ("Experiment", created["metadata"]["uid"])
    assert sets["exp-baseline"]["spec"]["replicas"] == 2
    pods = rollouts.rest.list(PODS.url(rollouts.ns), labels="herdsman.dev/experiment=exp")
    assert len(pods) == 3

    done = experiments.wait_phase("exp", "Successful", "Failed", "Error", timeout=60)
    assert done["phase"] == "Successful", done
    run = rollouts.rest.get(ANALYSIS_RUNS.url(rollouts.ns, "exp-errors"))
    assert run is not None
    assert run["metadata"]["ownerReferences"][0]["kind"] == "Experiment"
    # {{templates.canary.podTemplateHash}} reached the metric as the canary template's hash.
    canary_hash = next(t for t in done["templateStatuses"] if t["name"] == "canary")
    assert endpoint.hashes() == {canary_hash["podTemplateHash"]}
    assert {t["status"] for t in done["templateStatuses"]} == {"Successful"}
    # scaleDownDelaySeconds (1s) later, the ReplicaSets keep no pods; they stay as the record.
    wait_until(
        lambda: all(rs["spec"]["replicas"] == 0 for rs in experiments.replica_sets("exp").values()),
        timeout=30,
        what="experiment scaled down",
    )
    assert set(experiments.replica_sets("exp")) == {"exp-baseline", "exp-canary"}
    # Nothing holds its deletion for the operator (experiments run on a workqueue, no daemon).
    body = experiments.get("exp")
    assert body is not None
    assert not body["metadata"].get("finalizers")
    assert not errors(operator)


def test_a_failing_analysis_fails_the_experiment(
    operator: OperatorProcess, rollouts: Rollouts, experiments: Experiments, endpoint: Endpoint
) -> None:
    endpoint.errors = 3
    analysis_template(rollouts, endpoint)
    experiments.create(
        experiment(
            duration="1h",
            analyses=[
                {
                    "name": "errors",
                    "templateName": "errors",
                    "args": [{"name": "hash", "value": "x"}],
                }
            ],
        )
    )
    done = experiments.wait_phase("exp", "Successful", "Failed", "Error", timeout=60)
    assert done["phase"] == "Failed"
    assert "exp-errors" in done["message"]


def test_an_experiment_naming_a_missing_template_is_refused_before_any_pod(
    operator: OperatorProcess, rollouts: Rollouts, experiments: Experiments
) -> None:
    experiments.create(
        experiment(
            analyses=[
                {"name": "a", "templateName": "no-such-template"},
                {
                    "name": "b",
                    "templateName": "no-such-template",
                    "args": [{"name": "h", "value": "{{templates.canery.podTemplateHash}}"}],
                },
            ]
        )
    )
    status = experiments.wait_phase("exp", "Error")
    assert "spec.analyses[0].templateName" in status["message"]
    assert "'no-such-template' not found" in status["message"]
    assert "spec.analyses[1].args[0].value: unknown template 'canery'" in status["message"]
    assert any(c["type"] == "InvalidSpec" for c in status["conditions"])
    # Nothing was started.
    assert experiments.replica_sets("exp") == {}
    assert not rollouts.rest.list(ANALYSIS_RUNS.url(rollouts.ns))
    assert not errors(operator)


def test_the_api_server_refuses_malformed_experiments(
    rollouts: Rollouts, experiments: Experiments
) -> None:
    body = experiment()
    body["spec"]["templates"][1]["name"] = "baseline"
    with pytest.raises(KubeError) as err:
        experiments.create(body)
    assert "template names must be unique" in err.value.message
    body = experiment()
    body["spec"]["templates"][0]["selector"] = {"matchLabels": {"app": "other"}}
    with pytest.raises(KubeError) as err:
        experiments.create(body)
    assert "spec.templates[0].template.metadata.labels" in err.value.message
    body = experiment()
    del body["spec"]["templates"]
    with pytest.raises(KubeError) as err:
        experiments.create(body)
    assert "spec.templates" in err.value.message


# --- the canary experiment step ----------------------------------------------------------------


def experiment_step(endpoint_arg: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        {"setWeight": 20},
        {
            "experiment": {
                "duration": "3s",
                "templates": [
                    {"name": "baseline", "specRef": "stable"},
                    {"name": "canary", "specRef": "canary", "replicas": 2},
                ],
                "analyses": [{"name": "errors", "templateName": "errors", "args": [endpoint_arg]}],
            }
        },
        {"setWeight": 60},
    ]


def test_an_experiment_step_that_passes_lets_the_rollout_go_on(
    operator: OperatorProcess, rollouts: Rollouts, experiments: Experiments, endpoint: Endpoint
) -> None:
    analysis_template(rollouts, endpoint)
    rollouts.create(
        rollout(
            steps=experiment_step({"name": "hash", "valueFrom": {"podTemplateHashValue": "Latest"}})
        )
    )
    rollouts.wait_healthy("checkout-v001")
    rollouts.set_image(IMAGE_V2)
    name = "checkout-v002-exp1-a0"
    running = experiments.wait_phase(name, "Running", "Successful")
    body = experiments.get(name)
    assert body is not None
    owner = body["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["name"]) == ("Rollout", "checkout")
    # specRef: the baseline runs the stable pod spec, the canary the new one.
    images = {
        t["name"]: t["template"]["spec"]["containers"][0]["image"]
        for t in body["spec"]["templates"]
    }
    assert images == {"baseline": IMAGE_V1, "canary": IMAGE_V2}
    assert running["phase"] in ("Running", "Successful")
    # While the experiment runs the rollout waits at its step.
    assert rollouts.status()["step"] in ("2/3", "3/3")

    status = rollouts.wait_healthy("checkout-v002", timeout=90)
    assert experiments.status(name)["phase"] == "Successful"
    assert status["weights"]["canary"] == 0
    reasons = operator.logged("checkout", "ExperimentStarted", "ExperimentPassed")
    assert "ExperimentStarted" in reasons
    assert "ExperimentPassed" in reasons
    assert "RolloutAborted" not in reasons
    # podTemplateHashValue: Latest reached the analysis as the new server group's hash.
    v2 = rollouts.groups()["checkout-v002"]
    assert endpoint.hashes() == {v2["metadata"]["labels"]["herdsman.dev/pod-template-hash"]}
    assert not errors(operator)


def test_an_experiment_step_that_fails_aborts_the_rollout(
    operator: OperatorProcess, rollouts: Rollouts, experiments: Experiments, endpoint: Endpoint
) -> None:
    endpoint.errors = 5
    analysis_template(rollouts, endpoint)
    rollouts.create(rollout(steps=experiment_step({"name": "hash", "value": "x"})))
    rollouts.wait_healthy("checkout-v001")
    rollouts.set_image(IMAGE_V2)
    status = rollouts.wait(
        lambda s: s.get("abort") is True and s.get("phase") == "Degraded",
        what="rollout aborted by its experiment",
        timeout=90,
    )
    assert "experiment checkout-v002-exp1-a0 failed" in status["abortReason"]
    assert experiments.status("checkout-v002-exp1-a0")["phase"] == "Failed"
    # The existing abort path: traffic and pods back on the stable group.
    rollouts.wait(
        lambda s: (
            rollouts.sizes().get("checkout-v002", (0, 0))[0] == 0
            and rollouts.sizes()["checkout-v001"] == (10, 10)
        ),
        what="canary scaled away, stable whole",
    )
    assert rollouts.selector("checkout")["herdsman.dev/server-group"] == "checkout-v001"
    assert rollouts.selector("checkout-canary")["herdsman.dev/server-group"] == "checkout-v001"
    assert "RolloutAborted" in operator.logged("checkout", "RolloutAborted")
    assert not errors(operator)


def test_an_abort_terminates_a_running_experiment(
    operator: OperatorProcess, rollouts: Rollouts, experiments: Experiments, endpoint: Endpoint
) -> None:
    from herdsman.cli import actions

    analysis_template(rollouts, endpoint)
    steps = experiment_step({"name": "hash", "value": "x"})
    steps[1]["experiment"]["duration"] = "1h"
    rollouts.create(rollout(steps=steps))
    rollouts.wait_healthy("checkout-v001")
    rollouts.set_image(IMAGE_V2)
    experiments.wait_phase("checkout-v002-exp1-a0", "Running")
    actions.abort(rollouts.rest, rollouts.ns, "checkout")
    # Terminated: it ends with what it knows (its analysis has passed so far).
    done = experiments.wait_phase(
        "checkout-v002-exp1-a0", "Successful", "Failed", "Error", "Inconclusive"
    )
    assert done["message"] == "terminated"
    body = experiments.get("checkout-v002-exp1-a0")
    assert body is not None
    assert body["spec"]["terminate"] is True
