"""`kubectl herdsman plan`: exact pod splits and times for known manifests."""

from __future__ import annotations

from io import StringIO
from pathlib import Path
from typing import Any

import pytest
import yaml
from rich.console import Console

from herdsman.api.rollout import Rollout
from herdsman.cli.main import main
from herdsman.cli.plan import Timeline, render, seconds_text, timeline

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]


def rollout(replicas: int = 10, **canary: Any) -> Rollout:
    return Rollout.model_validate(
        {
            "metadata": {"name": "checkout"},
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": {"app": "checkout"}},
                "template": {
                    "metadata": {"labels": {"app": "checkout"}},
                    "spec": {"containers": [{"name": "app", "image": "x"}]},
                },
                "strategy": {"canary": canary},
            },
        }
    )


def splits(plan: Timeline) -> list[tuple[int, int, int]]:
    """(stable, canary, baseline) pods after each row."""
    return [(r.stable, r.canary, r.baseline) for r in plan.rows]


def text(plan: Timeline) -> str:
    console = Console(file=StringIO(), width=200, record=True)
    console.print(render(plan))
    return console.export_text()


def test_the_example_manifest(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan", "-f", str(ROOT / "examples" / "rollout.yaml")]) == 0
    out = capsys.readouterr().out
    assert "at most 13 pods, at least 8 available" in out
    lines = [line.split() for line in out.splitlines()]
    # #, then the step; weight, stable, canary pods follow the description.
    assert ["1", "setWeight", "20", "20%", "8", "2", "-", "0s"] in lines
    assert ["3", "setWeight", "50", "50%", "5", "5", "-", "5s"] in lines
    assert "Minimum time to full promotion: 5s, plus 1 manual promotion." in out


def test_replica_ratio_rounding_is_shown_as_the_real_share() -> None:
    plan = timeline(rollout(steps=[{"setWeight": 5}, {"setWeight": 33}, {"setWeight": 99}]))
    assert splits(plan) == [(9, 1, 0), (7, 3, 0), (1, 10, 0), (10, 0, 0)]
    assert [r.actual for r in plan.rows] == [10, 30, 91, 100]
    assert "5% (≈10% by pods)" in text(plan)


def test_baseline_carries_the_canary_weight_too() -> None:
    plan = timeline(rollout(baseline=True, steps=[{"setWeight": 10}, {"setWeight": 50}]))
    # 10%: one canary and one baseline pod beside eight stable; at 50% the stable side keeps a
    # single pod (it never reaches zero below 100%), within the 13-pod ceiling.
    assert splits(plan) == [(8, 1, 1), (1, 5, 5), (10, 0, 0)]


def test_tiny_rollouts_are_coarse_without_a_router() -> None:
    plan = timeline(rollout(replicas=2, maxSurge=0, maxUnavailable=1, steps=[{"setWeight": 10}]))
    assert plan.limits is not None
    assert plan.limits.ceiling == 2
    assert splits(plan)[0] == (1, 1, 0)
    assert plan.rows[0].actual == 50


def test_with_a_router_the_weight_is_exact_and_canary_scale_sizes_pods() -> None:
    plan = timeline(
        rollout(
            stableService="s",
            canaryService="c",
            trafficRouting={"gatewayAPI": {"httpRoute": "web"}},
            steps=[
                {"setCanaryScale": {"replicas": 3}},
                {"setWeight": 5},
                {"setCanaryScale": {"weight": 40}},
                {"setWeight": 20},
                {"setCanaryScale": {"matchTrafficWeight": True}},
            ],
        )
    )
    assert plan.limits is None
    assert [r.weight for r in plan.rows] == [0, 5, 5, 20, 20, 100]
    assert [r.actual for r in plan.rows] == [r.weight for r in plan.rows]
    # setCanaryScale holds until the next setWeight; matchTrafficWeight returns to the weight.
    assert [r.canary for r in plan.rows[:5]] == [3, 1, 4, 2, 2]
    assert all(r.stable == 10 for r in plan.rows)
    assert "Gateway API router: the weight is exact" in text(plan)


def test_dynamic_stable_scale_shrinks_stable_with_a_router() -> None:
    plan = timeline(
        rollout(
            stableService="s",
            canaryService="c",
            dynamicStableScale=True,
            trafficRouting={"smi": {}},
            steps=[{"setWeight": 30}, {"setWeight": 100}],
        )
    )
    assert splits(plan)[:2] == [(7, 3, 0), (0, 10, 0)]


def test_pauses_accumulate_and_manual_gates_are_counted() -> None:
    plan = timeline(
        rollout(
            steps=[
                {"setWeight": 10},
                {"pause": {"duration": "90s"}},
                {"pause": {}},
                {"setWeight": 50},
                {"pause": {"duration": "1h"}},
                {"pause": {"duration": 30}},
                {"pause": {}},
            ]
        )
    )
    assert [r.elapsed for r in plan.rows] == [0, 90, 90, 90, 3690, 3720, 3720, 3720]
    assert [r.human for r in plan.rows] == [False, False, True, False, False, False, True, False]
    assert plan.human_gates == 2
    assert plan.minimum_seconds == 3720
    assert "Minimum time to full promotion: 1h2m, plus 2 manual promotions." in text(plan)


def test_background_analysis_start_and_analysis_steps_are_marked() -> None:
    plan = timeline(
        rollout(
            analysis={"templates": [{"templateName": "errors"}], "startingStep": 2},
            steps=[
                {"setWeight": 10},
                {"analysis": {"templates": [{"templateName": "smoke"}]}},
                {"setWeight": 30},
            ],
        )
    )
    assert [i for i, r in enumerate(plan.rows) if any("background" in n for n in r.notes)] == [2]
    assert plan.rows[1].description == "analysis smoke"
    assert "a failure aborts" in plan.rows[1].notes[0]
    assert "plus the analysis runs' time" in text(plan)


def test_final_promotion_row() -> None:
    plan = timeline(rollout(steps=[{"setWeight": 40}]))
    final = plan.rows[-1]
    assert final.number is None
    assert final.weight == 100
    assert (final.stable, final.canary) == (10, 0)
    assert "40% → 100% in one move" in final.notes
    assert "no steps" in "; ".join(timeline(rollout()).rows[-1].notes)


def test_blue_green_timeline() -> None:
    manifest = rollout().model_dump(by_alias=True, exclude_none=True, mode="json")
    manifest["spec"]["strategy"] = {
        "blueGreen": {
            "activeService": "web",
            "previewService": "web-preview",
            "previewReplicaCount": 2,
            "autoPromotionSeconds": 60,
            "postPromotionAnalysis": {"templates": [{"templateName": "smoke"}]},
        }
    }
    plan = timeline(Rollout.model_validate(manifest))
    assert [r.description for r in plan.rows] == [
        "create the preview group (2 pods)",
        "auto-promote after 60s",
        "switch web to the new group",
        "post-promotion analysis smoke",
        "the previous group scales down",
    ]
    assert [(r.stable, r.canary) for r in plan.rows] == [
        (10, 2),
        (10, 2),
        (10, 10),
        (10, 10),
        (0, 10),
    ]
    assert plan.minimum_seconds == 90
    assert "Old pods" in text(plan)


def test_a_manifest_that_fails_lint_gets_lint_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = rollout(steps=[{"setWeight": 20}]).model_dump(by_alias=True, exclude_none=True)
    bad["apiVersion"], bad["kind"] = "herdsman.dev/v1alpha1", "Rollout"
    bad["spec"]["strategy"]["canary"]["steps"] = [{"setWeight": 120}]
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(bad))
    assert main(["plan", "-f", str(path)]) == 1
    out = capsys.readouterr().out
    assert "spec.strategy.canary.steps: Invalid value: setWeight must be between 0" in out
    assert "Minimum time" not in out


def test_no_rollout_in_the_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "svc.yaml"
    path.write_text("apiVersion: v1\nkind: Service\nmetadata: {name: x}\n")
    assert main(["plan", "-f", str(path)]) == 1
    assert "error: no Rollout in the input" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [(0, "0s"), (0.25, "250ms"), (45, "45s"), (90, "1m30s"), (3600, "1h"), (3725, "1h2m5s")],
)
def test_seconds_text(seconds: float, shown: str) -> None:
    assert seconds_text(seconds) == shown


def test_a_chaos_step_lasts_its_duration_and_says_who_judges_it() -> None:
    plan = timeline(
        rollout(
            steps=[
                {"setWeight": 20},
                {"chaos": {"action": "killPods", "percent": 50, "duration": "2m"}},
            ],
            analysis={"templates": [{"templateName": "t"}]},
        )
    )
    row = plan.rows[1]
    assert row.description == "chaos killPods 50% for 2m"
    assert row.elapsed == 120
    assert any("background analysis judges it" in n for n in row.notes)
    assert "chaos killPods 50% for 2m" in text(plan)
