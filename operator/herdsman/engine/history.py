"""spec.analysis run history limits (Argo's successfulRunHistoryLimit and
unsuccessfulRunHistoryLimit): which finished AnalysisRuns to delete. Pure.

Only finished runs the status no longer refers to are candidates; the newest N of each kind
are kept. An absent limit keeps every run of that kind (Herdsman's default; Argo keeps 5).
"""

from __future__ import annotations

from typing import Any

from herdsman.api.analysis import TERMINAL_PHASES
from herdsman.api.rollout import Rollout, RolloutStatus


def runs_to_delete(
    rollout: Rollout, status: RolloutStatus, runs: dict[str, dict[str, Any]]
) -> list[str]:
    limits = rollout.spec.analysis
    if limits is None:
        return []
    in_use = {r.name for r in status.analysis_runs}
    finished = [
        (body.get("metadata", {}).get("creationTimestamp") or "", name, phase)
        for name, body in runs.items()
        if name not in in_use
        and (phase := (body.get("status") or {}).get("phase")) in TERMINAL_PHASES
    ]
    finished.sort(reverse=True)  # newest first (RFC 3339 sorts as text), then by name
    doomed: list[str] = []
    for successful, limit in (
        (True, limits.successful_run_history_limit),
        (False, limits.unsuccessful_run_history_limit),
    ):
        if limit is None:
            continue
        same = [name for _, name, phase in finished if (phase == "Successful") == successful]
        doomed.extend(same[limit:])
    return sorted(doomed)
