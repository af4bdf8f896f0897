"""The dashboard's pure parts and its HTTP guards, without a cluster.

What the page shows is shaped here (views, report); that the browser really draws it, live, is
tests/e2e/test_demo_story.py's job.
"""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import pytest
from aiohttp.test_utils import TestClient, TestServer

from harness.analysis import T0, metric, run_of
from herdsman.analysis.runs import MeasurementResult, record
from herdsman.cluster.kube import Rest
from herdsman.dashboard import report, views
from herdsman.dashboard.hub import QUEUE_LIMIT, Hub
from herdsman.dashboard.server import Settings, application
from herdsman.dashboard.watch import Event

pytestmark = pytest.mark.unit


def noisy(center: float, n: int, seed: int) -> list[float]:
    rng = random.Random(seed)
    return [center * (1 + rng.uniform(-0.05, 0.05)) for _ in range(n)]


def judged_run() -> dict[str, Any]:
    provider = {"prometheus": {"address": "http://p", "query": 'x{g="{{group}}"}'}}
    run = run_of(
        metric(
            "latency", provider=provider, judge={"direction": "increase", "allowedIncrease": 1.1}
        )
    )
    stamps = [1.7e9 + i for i in range(20)]
    measured = MeasurementResult(
        metric="latency",
        phase=None,
        started_at=T0,
        finished_at=T0,
        samples={"baseline": noisy(0.1, 20, 1), "canary": noisy(0.13, 20, 2)},
        timestamps={"baseline": stamps, "canary": stamps},
    )
    run.status = record(run, [measured], T0)
    body: dict[str, Any] = run.model_dump(by_alias=True, exclude_none=True, mode="json")
    return body


def test_a_judged_metrics_figure_holds_the_runs_own_points_and_interval() -> None:
    body = judged_run()
    judgement = body["status"]["metricResults"][0]["judgement"]
    (entry,) = report.canary_report(body)["metrics"]
    assert entry["verdict"] == "High"
    traces = entry["figure"]["data"]
    for role in ("baseline", "canary"):
        line = next(t for t in traces if t["type"] == "scatter" and t["name"] == role)
        box = next(t for t in traces if t["type"] == "box" and t["name"] == role)
        assert list(line["y"]) == judgement[f"{role}Series"]["values"]
        assert list(box["y"]) == judgement[f"{role}Series"]["values"]
    shift = next(t for t in traces if t["name"] == "shift")
    assert list(shift["y"]) == [judgement["shift"]]
    assert shift["error_y"]["array"][0] == pytest.approx(
        judgement["shiftUpper"] - judgement["shift"]
    )
    # The allowance is drawn in the metric's units: +10% of the baseline median.
    lines = [s for s in entry["figure"]["layout"]["shapes"] if s.get("line", {}).get("dash")]
    assert lines[0]["y0"] == pytest.approx(0.1 * judgement["baseline"]["median"])
    assert "template" not in entry["figure"]["layout"]
    assert entry["numbers"]["pValue"] == judgement["pValue"]


def test_a_threshold_metric_plots_its_measurements_by_verdict() -> None:
    run = run_of(metric("errors", interval="1s", count=3))
    at = [T0 + timedelta(seconds=i) for i in range(2)]
    results = [
        MeasurementResult("errors", "Successful", t, t, value=f"[{v}]")
        for t, v in zip(at, (0.2, 0.4), strict=True)
    ]
    run.status = record(run, results, at[-1])
    body = run.model_dump(by_alias=True, exclude_none=True, mode="json")
    (entry,) = report.canary_report(body)["metrics"]
    (trace,) = entry["figure"]["data"]
    assert trace["name"] == "Successful"
    assert list(trace["y"]) == [0.2, 0.4]


def rollout(step: int | None, weights: dict[str, int], **status: Any) -> dict[str, Any]:
    return {
        "metadata": {"namespace": "shop", "name": "checkout", "resourceVersion": "1"},
        "spec": {
            "replicas": 10,
            "strategy": {
                "canary": {"steps": [{"setWeight": 20}, {"pause": {}}, {"setWeight": 50}]}
            },
        },
        "status": {"phase": "Paused", "currentStepIndex": step, "weights": weights, **status},
    }


def test_the_step_timeline_marks_states_and_times_of_the_current_release_only() -> None:
    events = [
        {"reason": "StepStarted", "message": "step 3/3: setWeight 50", "time": "old"},
        {"reason": "NewRevision", "message": "revision 3", "time": "t0"},
        {"reason": "StepStarted", "message": "step 1/3: setWeight 20", "time": "t1"},
        {"reason": "StepStarted", "message": "step 2/3: pause (until promoted)", "time": "t2"},
    ]
    body = rollout(1, {"stable": 80, "canary": 20}, pauseConditions=[{"reason": "PauseStep"}])
    steps = views.steps(body, events)
    assert [(s["state"], s["at"]) for s in steps] == [
        ("done", "t1"),
        ("paused", "t2"),
        ("pending", None),  # release 2 reached it; this release has not
    ]
    assert steps[1]["text"] == "pause (until promoted)"


def test_history_keeps_one_point_per_change_and_stays_bounded() -> None:
    history = views.History(limit=3)
    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert history.observe(rollout(0, {"stable": 100}), now)
    assert not history.observe(rollout(0, {"stable": 100}), now)  # nothing changed
    for i, canary in enumerate((20, 50, 100)):
        assert history.observe(rollout(i, {"stable": 100 - canary, "canary": canary}), now)
    points = history.points(("shop", "checkout"))
    assert [p.weights["canary"] for p in points] == [20, 50, 100]
    assert report.weights_figure(points)["data"][1]["y"] == [20, 50, 100]


def test_the_hub_publishes_changes_and_tells_a_slow_browser_to_reload() -> None:
    async def scenario() -> None:
        hub = Hub()
        sinks = hub.sinks("shop")
        queue = hub.subscribe()
        await sinks.rollouts("SYNC", [rollout(0, {"stable": 100})])
        assert queue.get_nowait() == ("reset", {})
        await sinks.rollouts("EVENT", Event("MODIFIED", rollout(1, {"stable": 80, "canary": 20})))
        kind, row = queue.get_nowait()
        assert (kind, row["weights"]["canary"]) == ("rollout", 20)
        for _ in range(QUEUE_LIMIT + 5):
            hub.publish("rollout", {})
        # The backlog was dropped for one "reset" (reload the list); later changes follow it.
        assert queue.get_nowait() == ("reset", {})
        assert queue.qsize() == 4
        await sinks.rollouts("EVENT", Event("DELETED", rollout(1, {"stable": 100})))
        assert hub.rollout_list() == []

    asyncio.run(scenario())


def _post(settings: Settings, headers: dict[str, str], body: str = "{}") -> tuple[int, str]:
    async def scenario() -> tuple[int, str]:
        app = application(Hub(), cast(Rest, object()), settings)
        async with TestClient(TestServer(app)) as client:
            answer = await client.post(
                "/api/rollouts/shop/checkout/promote", data=body, headers=headers
            )
            return answer.status, (await answer.json())["error"]

    return asyncio.run(scenario())


GOOD = {"Content-Type": "application/json", "X-Herdsman-Action": "1"}


def test_actions_are_refused_when_off_without_the_header_across_origins_and_without_a_token() -> (
    None
):
    assert _post(Settings(actions="off"), GOOD)[0] == 403
    status, error = _post(Settings(actions="kubeconfig"), {"Content-Type": "text/plain"})
    assert status == 400
    assert "X-Herdsman-Action" in error
    assert (
        _post(Settings(actions="kubeconfig"), {**GOOD, "Origin": "http://evil.example"})[0] == 403
    )
    status, error = _post(Settings(actions="token"), GOOD)
    assert status == 401
    assert "token" in error
