"""spec.analysis history limits (engine.history): which finished AnalysisRuns are deleted."""

from __future__ import annotations

from typing import Any

import pytest
from sim import manifest

from herdsman.api.rollout import Rollout, RolloutStatus
from herdsman.engine.history import runs_to_delete

pytestmark = pytest.mark.unit


def run(minute: int, phase: str) -> dict[str, Any]:
    return {
        "metadata": {"creationTimestamp": f"2026-01-01T00:{minute:02d}:00Z"},
        "status": {"phase": phase},
    }


RUNS = {
    "r1": run(1, "Successful"),
    "r2": run(2, "Failed"),
    "r3": run(3, "Successful"),
    "r4": run(4, "Error"),
    "r5": run(5, "Successful"),
    "r6": run(6, "Running"),
    "r7": run(7, "Successful"),
}


def rollout(**limits: int) -> Rollout:
    body = manifest()
    body["spec"]["analysis"] = limits
    return Rollout.model_validate(body)


def test_the_newest_runs_of_each_kind_are_kept() -> None:
    doomed = runs_to_delete(
        rollout(successfulRunHistoryLimit=2, unsuccessfulRunHistoryLimit=1), RolloutStatus(), RUNS
    )
    assert doomed == ["r1", "r2", "r3"]


def test_runs_the_status_refers_to_and_unfinished_runs_are_kept() -> None:
    status = RolloutStatus.model_validate({"analysisRuns": [{"name": "r1"}]})
    doomed = runs_to_delete(rollout(successfulRunHistoryLimit=0), status, RUNS)
    assert doomed == ["r3", "r5", "r7"]


def test_without_limits_nothing_is_deleted() -> None:
    assert runs_to_delete(Rollout.model_validate(manifest()), RolloutStatus(), RUNS) == []
    assert runs_to_delete(rollout(unsuccessfulRunHistoryLimit=0), RolloutStatus(), RUNS) == [
        "r2",
        "r4",
    ]
