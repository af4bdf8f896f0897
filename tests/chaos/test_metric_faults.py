"""Bad metrics never promote a canary: the rollout pauses or aborts as the README documents.

One canary per way a Prometheus goes wrong, side by side under one operator, each with an
`analysis` step against a fake Prometheus (harness/faultyprom.py): down, slow past the
measurement deadline, garbage, NaN, empty, flapping. Documented (README, "Verdicts"): a Failed
run aborts; Inconclusive — and Error, when measurements could not be taken — pauses until a
person decides. A control canary against a healthy answer is promoted, so the setup can fail.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from harness.chaosreport import REPORT
from harness.cluster import Cluster, wait_until
from harness.faultyprom import FaultyPrometheus
from harness.invariants import Invariants
from harness.operator import OperatorProcess
from harness.rollouts import IMAGE_V2, Rollouts, rollout
from herdsman.cluster.kube import ANALYSIS_RUNS, ANALYSIS_TEMPLATES

pytestmark = pytest.mark.chaos

# mode -> the phase the rollout must end in
EXPECTED = {
    "down": "Paused",
    "slow": "Paused",
    "garbage": "Paused",
    "nan": "Paused",
    "empty": "Paused",
    "flapping": "Degraded",
    "good": "Healthy",
}


@pytest.fixture
def prom() -> Iterator[FaultyPrometheus]:
    with FaultyPrometheus(slow_seconds=8) as server:
        yield server


def template(name: str, address: str) -> dict[str, Any]:
    return {
        "apiVersion": "herdsman.dev/v1alpha1",
        "kind": "AnalysisTemplate",
        "metadata": {"name": name},
        "spec": {
            "metrics": [
                {
                    "name": "error-rate",
                    "interval": "1s",
                    "count": 4,
                    "consecutiveErrorLimit": 1,
                    "successCondition": "result[0] < 0.5",
                    "failureCondition": "result[0] >= 0.5",
                    "provider": {"prometheus": {"address": address, "query": "errors"}},
                }
            ]
        },
    }


def test_no_metric_fault_ever_promotes_and_each_ends_as_documented(
    cluster: Cluster, namespace: str, rollouts: Rollouts, prom: FaultyPrometheus, tmp_path: Path
) -> None:
    operator = OperatorProcess(
        cluster=cluster,
        namespaces=[namespace],
        log_path=tmp_path / "operator.log",
        # A slow Prometheus is an Error after this long (the README's knob), not 10 s.
        env={"HERDSMAN_ACCESS_MEASUREMENT_TIMEOUT": "2"},
    ).start()
    check = Invariants(cluster.rest, namespace).start()
    try:
        for mode in EXPECTED:
            name = f"m-{mode}"
            cluster.rest.create(
                ANALYSIS_TEMPLATES.url(namespace), template(name, prom.address(mode))
            )
            rollouts.create(
                rollout(
                    name,
                    replicas=2,
                    steps=[
                        {"setWeight": 50},
                        {"analysis": {"templates": [{"templateName": name}]}},
                        {"setWeight": 100},
                    ],
                )
            )
        for mode in EXPECTED:
            rollouts.wait_healthy(f"m-{mode}-v001", name=f"m-{mode}", timeout=60)
        for mode in EXPECTED:
            rollouts.set_image(IMAGE_V2, name=f"m-{mode}")

        def ended() -> dict[str, str] | None:
            phases = {m: rollouts.status(f"m-{m}").get("phase", "") for m in EXPECTED}
            return phases if phases == EXPECTED else None

        wait_until(
            ended,
            timeout=120,
            interval=1,
            what="every rollout in its documented end state",
            describe=lambda: str({m: rollouts.status(f"m-{m}") for m in EXPECTED}),
        )
        time.sleep(3)  # and they stay there: nothing promotes later on its own
        for mode, phase in EXPECTED.items():
            name = f"m-{mode}"
            status = rollouts.status(name)
            assert status["phase"] == phase, (mode, status)
            if mode == "good":
                assert status["stableServerGroup"] == f"{name}-v002"
                continue
            assert status["stableServerGroup"] == f"{name}-v001", (mode, status)
            runs = cluster.rest.list(ANALYSIS_RUNS.url(namespace))
            mine = [r for r in runs if r["metadata"]["name"].startswith(f"{name}-")]
            assert mine, f"{mode}: no AnalysisRun"
            assert all((r.get("status") or {}).get("phase") != "Successful" for r in mine), mode
            if phase == "Paused":
                assert status["pauseConditions"], (mode, status)
        for mode, count in prom.counts.items():
            REPORT.metric_faults[mode] += count
        attempts = [r for r in operator.log().splitlines() if "could not measure" in r]
        REPORT.metric_faults["down"] += sum("m-down" in line for line in attempts)
        assert operator.alive
        assert not operator.errors(), operator.errors()[:5]
    finally:
        violations = check.stop()
        operator.stop()
        for v in violations:
            REPORT.violation(f"metric faults: {v}")
    assert not violations, violations
