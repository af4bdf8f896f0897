"""The Job metric provider on the real control plane: the real Job controller decides each Job's
outcome, the rollout acts on it, and the run's Jobs are gone once it ends.

KWOK plays the kubelet with the stages in tests/cluster/kwok-stages.yaml: a Job's pod runs,
then exits 0 (pod-complete), or, when its template carries the annotation
`kwok.herdsman.dev/exit-code`, exits with that code (pod-fail). The Job controller then decides
the Job's outcome from the pod as it would on a real node; no test touches any status.
"""

from __future__ import annotations

from typing import Any

import pytest

from harness.cluster import Cluster
from harness.operator import OperatorProcess
from harness.rollouts import IMAGE_V2, Rollouts, rollout
from herdsman.cli.main import main as cli_main
from herdsman.cluster.kube import ANALYSIS_RUNS, ANALYSIS_TEMPLATES

pytestmark = pytest.mark.e2e

JOBS = "/apis/batch/v1/namespaces/{ns}/jobs"
PODS = "/api/v1/namespaces/{ns}/pods"
EXIT_CODE = "kwok.herdsman.dev/exit-code"


def job_template(rollouts: Rollouts, name: str, *, fail: bool) -> None:
    pod_spec: dict[str, Any] = {
        "containers": [{"name": "check", "image": "busybox", "command": ["true"]}],
        "restartPolicy": "Never",
    }
    pod_template: dict[str, Any] = {"spec": pod_spec}
    if fail:
        # Read by KWOK's pod-fail stage: the container exits 3.
        pod_template["metadata"] = {"annotations": {EXIT_CODE: "3"}}
    job_spec: dict[str, Any] = {"backoffLimit": 0, "template": pod_template}
    body = {
        "apiVersion": "herdsman.dev/v1alpha1",
        "kind": "AnalysisTemplate",
        "metadata": {"name": name},
        "spec": {
            "args": [{"name": "count", "value": "1"}],
            "metrics": [
                {
                    "name": "smoke",
                    "count": "{{args.count}}",  # Argo's int-or-string, filled in from args
                    "provider": {
                        "job": {
                            "metadata": {
                                "labels": {"team": "checkout"},
                                "annotations": {"herdsman.dev/purpose": "smoke"},
                            },
                            "spec": job_spec,
                        }
                    },
                }
            ],
        },
    }
    rollouts.rest.create(ANALYSIS_TEMPLATES.url(rollouts.ns), body)


def jobs(rollouts: Rollouts) -> list[dict[str, Any]]:
    return rollouts.rest.list(JOBS.format(ns=rollouts.ns))


def start(rollouts: Rollouts, template: str) -> None:
    rollouts.create(
        rollout(
            steps=[
                {"setWeight": 20},
                {"analysis": {"templates": [{"templateName": template}]}},
                {"setWeight": 50},
            ]
        )
    )
    rollouts.wait_healthy("checkout-v001")
    rollouts.set_image(IMAGE_V2)


def test_a_job_that_succeeds_promotes_and_its_job_is_deleted(
    operator: OperatorProcess,
    rollouts: Rollouts,
    cluster: Cluster,
    capsys: pytest.CaptureFixture[str],
) -> None:
    job_template(rollouts, "smoke-job", fail=False)
    start(rollouts, "smoke-job")
    seen: list[dict[str, Any]] = []

    def job_made(_: Any) -> bool:
        seen.extend(jobs(rollouts))
        return bool(seen)

    rollouts.wait(job_made, timeout=60, what="the measurement's Job")
    job = seen[0]
    assert job["metadata"]["labels"]["team"] == "checkout"
    assert job["metadata"]["annotations"]["herdsman.dev/purpose"] == "smoke"
    owner = job["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["name"]) == ("AnalysisRun", "checkout-v002-step1-a0")

    rollouts.wait_healthy("checkout-v002", timeout=90)
    run = rollouts.rest.get(ANALYSIS_RUNS.url(rollouts.ns, "checkout-v002-step1-a0"))
    assert run is not None
    assert run["status"]["phase"] == "Successful"
    result = run["status"]["metricResults"][0]
    assert result["successful"] == 1
    assert "succeeded" in result["measurements"][0]["message"]
    rollouts.wait(lambda _: not jobs(rollouts), timeout=30, what="the run's Jobs deleted")

    capsys.readouterr()
    code = cli_main(
        [
            "analysis",
            "checkout-v002-step1-a0",
            "-n",
            rollouts.ns,
            "--kubeconfig",
            str(cluster.kubeconfig),
        ]
    )
    out = capsys.readouterr().out
    assert code == 0, out
    assert "smoke" in out
    assert job["metadata"]["name"] in out, out


def test_a_job_that_fails_aborts_the_rollout_and_its_job_is_deleted(
    operator: OperatorProcess, rollouts: Rollouts
) -> None:
    job_template(rollouts, "smoke-job", fail=True)
    start(rollouts, "smoke-job")
    failed: list[dict[str, Any]] = []

    def pod_failed(_: Any) -> bool:
        pods = rollouts.rest.list(PODS.format(ns=rollouts.ns), labels="job-name")
        failed.extend(p for p in pods if (p.get("status") or {}).get("phase") == "Failed")
        return bool(failed)

    rollouts.wait(pod_failed, timeout=60, what="the Job's pod failed")
    terminated = failed[0]["status"]["containerStatuses"][0]["state"]["terminated"]
    assert terminated["exitCode"] == 3, terminated

    status = rollouts.wait_phase("Degraded", timeout=90)
    assert "smoke" in status["message"]
    assert status["weights"]["canary"] == 0
    run = rollouts.rest.get(ANALYSIS_RUNS.url(rollouts.ns, "checkout-v002-step1-a0"))
    assert run is not None
    assert run["status"]["phase"] == "Failed"
    measurement = run["status"]["metricResults"][0]["measurements"][0]
    assert measurement["phase"] == "Failed"
    # backoffLimit 0 and one pod that exited non-zero: the Job controller's own verdict.
    assert "BackoffLimitExceeded" in measurement["message"], measurement
    rollouts.wait(lambda _: not jobs(rollouts), timeout=30, what="the run's Jobs deleted")
