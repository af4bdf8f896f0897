"""`get` and `status` drawn from canned Rollout objects, as the API server returns them."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from io import StringIO
from typing import Any

import pytest
from rich.console import Console, RenderableType

from herdsman.cli import render
from herdsman.cli import text as cli_text

pytestmark = pytest.mark.unit

NOW = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)


def ago(seconds: int) -> str:
    return datetime.fromtimestamp(NOW.timestamp() - seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


CANARY: dict[str, Any] = {
    "apiVersion": "herdsman.dev/v1alpha1",
    "kind": "Rollout",
    "metadata": {
        "name": "checkout",
        "namespace": "shop",
        "generation": 3,
        "creationTimestamp": ago(3 * 3600),
    },
    "spec": {
        "replicas": 10,
        "strategy": {
            "canary": {
                "baseline": True,
                "analysis": {"templates": [{"templateName": "errors"}], "startingStep": 1},
                "steps": [
                    {"setWeight": 10},
                    {"pause": {"duration": "2m"}},
                    {"analysis": {"templates": [{"templateName": "compare"}]}},
                    {"setWeight": 40},
                    {"pause": {}},
                ],
            }
        },
    },
    "status": {
        "observedGeneration": 3,
        "phase": "Progressing",
        "message": "analysis checkout-v002-step2-a0 running",
        "currentRevision": 2,
        "stableRevision": 1,
        "stableServerGroup": "checkout-v001",
        "canaryServerGroup": "checkout-v002",
        "baselineServerGroup": "checkout-v001-baseline",
        "currentStepIndex": 2,
        "step": "3/5",
        "canaryWeight": 10,
        "weights": {"stable": 80, "canary": 10, "baseline": 10},
        "availableReplicas": 10,
        "updatedReplicas": 1,
        "readyReplicas": 10,
        "serverGroups": [
            {
                "name": "checkout-v002",
                "role": "canary",
                "revision": 2,
                "podTemplateHash": "h2",
                "replicas": 1,
                "readyReplicas": 1,
                "availableReplicas": 1,
            },
            {
                "name": "checkout-v001-baseline",
                "role": "baseline",
                "revision": 1,
                "podTemplateHash": "h1",
                "replicas": 1,
                "readyReplicas": 1,
                "availableReplicas": 0,
            },
            {
                "name": "checkout-v001",
                "role": "stable",
                "revision": 1,
                "podTemplateHash": "h1",
                "replicas": 8,
                "readyReplicas": 8,
                "availableReplicas": 8,
            },
            {
                "name": "checkout-v000",
                "role": "old",
                "revision": 0,
                "podTemplateHash": "h0",
                "replicas": 0,
                "scaleDownAt": ago(-25),
            },
        ],
        "analysisRuns": [
            {"name": "checkout-v002-background-a0", "kind": "background", "phase": "Running"},
            {"name": "checkout-v002-step2-a0", "kind": "step", "stepIndex": 2, "phase": "Pending"},
        ],
        "conditions": [
            {
                "type": "Progressing",
                "status": "True",
                "reason": "StepStarted",
                "message": "step 3/5: analysis compare",
                "lastTransitionTime": ago(30),
            },
        ],
        "aFieldFromTheFuture": {"whatever": 1},
    },
}

BLUE_GREEN: dict[str, Any] = {
    "metadata": {"name": "web", "namespace": "shop", "creationTimestamp": ago(600)},
    "spec": {
        "replicas": 4,
        "strategy": {
            "blueGreen": {
                "activeService": "web",
                "previewService": "web-preview",
                "autoPromotionEnabled": False,
                "prePromotionAnalysis": {"templates": [{"templateName": "smoke"}]},
            }
        },
    },
    "status": {
        "phase": "Paused",
        "message": "preview ready; waiting for promotion",
        "pauseConditions": [{"reason": "BlueGreenPause", "startTime": ago(45)}],
        "blueGreen": {
            "activeServerGroup": "web-v001",
            "previewServerGroup": "web-v002",
            "previewReadyAt": ago(50),
        },
        "serverGroups": [
            {
                "name": "web-v002",
                "role": "preview",
                "revision": 2,
                "replicas": 4,
                "readyReplicas": 4,
                "availableReplicas": 4,
            },
            {
                "name": "web-v001",
                "role": "active",
                "revision": 1,
                "replicas": 4,
                "readyReplicas": 4,
                "availableReplicas": 4,
            },
        ],
        "analysisRuns": [
            {"name": "web-v002-prepromotion-a0", "kind": "prePromotion", "phase": "Successful"}
        ],
    },
}


def shown(renderable: RenderableType, width: int = 120) -> str:
    console = Console(file=StringIO(), width=width, record=True)
    console.print(renderable)
    return console.export_text()


def line_with(text: str, needle: str) -> str:
    hits = [line for line in text.splitlines() if needle in line]
    assert hits, f"{needle!r} not in:\n{text}"
    return hits[0]


def test_status_shows_steps_with_their_markers() -> None:
    out = shown(render.status_view(CANARY, NOW))
    assert "✔   1.  setWeight 10" in out
    assert "✔   2.  pause 2m" in line_with(out, "pause 2m")
    assert "background analysis from here" in line_with(out, "pause 2m")
    assert "▶   3.  analysis compare" in out
    assert "○   4.  setWeight 40" in out
    assert "needs promote" in line_with(out, "5.  pause (until promoted)")


def row(text: str, first: str) -> list[str]:
    """The cells of the table row whose first cell is `first`, panel borders dropped."""
    for line in text.splitlines():
        cells = [c for c in line.split() if c != "│"]
        if cells and cells[0] == first:
            return cells
    raise AssertionError(f"no row starting with {first!r} in:\n{text}")


def test_status_shows_the_split_groups_runs_and_conditions() -> None:
    out = shown(render.status_view(CANARY, NOW))
    bar = line_with(out, "█")
    assert bar.count("█") == 40
    assert bar.count("▒") == 5
    assert bar.count("░") == 5
    assert "█ stable 80%  ▒ baseline 10%  ░ canary 10%" in out
    assert row(out, "checkout-v001-baseline") == [
        "checkout-v001-baseline",
        "baseline",
        "1",
        "1",
        "1",
        "0",
        "-",
    ]
    assert row(out, "checkout-v001") == ["checkout-v001", "stable", "1", "8", "8", "8", "-"]
    assert "in 25s" in line_with(out, "checkout-v000")
    assert row(out, "checkout-v002-step2-a0") == ["checkout-v002-step2-a0", "step", "3", "Pending"]
    assert "background" in line_with(out, "background-a0")
    assert "StepStarted" in line_with(out, "Progressing  True")
    assert "Progressing — analysis checkout-v002-step2-a0 running" in out
    assert "current 2, stable 1" in out
    assert "desired 10 · updated 1 · ready 10 · available 10" in out
    assert "shop/checkout" in out
    assert "canary · replica ratio (no router)" in out


def test_paused_aborted_and_pending_intents() -> None:
    body = copy.deepcopy(CANARY)
    body["spec"]["paused"] = True
    body["status"].update(
        phase="Degraded",
        abort=True,
        abortedAt=ago(20),
        pauseConditions=[{"reason": "PauseStep", "startTime": ago(70)}],
        promote={"fromStep": 2, "full": True},
    )
    body["metadata"]["generation"] = 4
    out = shown(render.status_view(body, NOW))
    assert "✖   3.  analysis compare" in out
    assert "PauseStep (70s), spec.paused (`resume` continues)" in out
    assert "yes, 20s ago (`retry` resumes)" in out
    assert "requested: every remaining step" in out
    assert "generation 3 of 4: status lags the spec" in out


def test_a_healthy_rollout_has_every_step_done() -> None:
    body = copy.deepcopy(CANARY)
    body["status"].update(phase="Healthy", currentStepIndex=5, step="5/5", abort=False)
    out = shown(render.status_view(body, NOW))
    assert sum(line.strip("│ ").startswith("✔") for line in out.splitlines()) == 5


def test_blue_green_renders_its_services_and_groups() -> None:
    out = shown(render.status_view(BLUE_GREEN, NOW))
    assert "service web → web-v001" in line_with(out, "Active")
    assert "service web-preview → web-v002" in line_with(out, "Preview ")
    assert "manual (`promote` switches)" in out
    assert "analysis smoke" in line_with(out, "Pre-promotion")
    assert "50s ago" in line_with(out, "Preview ready")
    assert row(out, "web-v002")[:3] == ["web-v002", "preview", "2"]
    assert "BlueGreenPause (45s)" in out
    assert "█ active 100%" in out
    assert "Successful" in line_with(out, "prepromotion")
    assert "Steps" not in out


def test_a_fresh_rollout_without_status() -> None:
    body = {"metadata": {"name": "new", "namespace": "shop"}, "spec": CANARY["spec"]}
    out = shown(render.status_view(body, NOW))
    assert "Unknown" in line_with(out, "Phase")
    assert "no server groups yet" in out
    assert "▶   1.  setWeight 10" in out
    assert "█ stable 100%" in out


def test_an_unparseable_step_is_shown_as_it_is() -> None:
    body = copy.deepcopy(CANARY)
    body["spec"]["strategy"]["canary"]["steps"][0] = {"setWeight": 10, "future": {"x": 1}}
    assert '{"setWeight":10,"future":{"x":1}}' in shown(render.status_view(body, NOW), width=160)


def test_get_table_and_summary() -> None:
    table = shown(render.rollouts_table([CANARY, BLUE_GREEN], NOW))
    header = line_with(table, "NAME").split()
    assert header == [
        "NAME",
        "STRATEGY",
        "PHASE",
        "STEP",
        "WEIGHT",
        "STABLE",
        "CANARY",
        "AVAILABLE",
        "AGE",
    ]
    assert line_with(table, "checkout ").split() == [
        "checkout",
        "canary",
        "Progressing",
        "3/5",
        "10%",
        "checkout-v001",
        "checkout-v002",
        "10/10",
        "3h",
    ]
    assert line_with(table, "web ").split()[:2] == ["web", "blueGreen"]
    assert "web-v002" in line_with(table, "web ")  # the preview stands in for the canary
    wide = shown(render.rollouts_table([CANARY], NOW, namespaces=True))
    assert line_with(wide, "checkout").split()[:2] == ["shop", "checkout"]
    summary = shown(render.summary(CANARY, NOW))
    assert "stable 80%, canary 10%, baseline 10%" in line_with(summary, "Weight")
    assert "10/10" in line_with(summary, "Available")


@pytest.mark.parametrize(
    ("seconds", "text"), [(5, "5s"), (119, "119s"), (600, "10m"), (7200, "2h"), (3 * 86400, "3d")]
)
def test_age_reads_like_kubectl(seconds: int, text: str) -> None:
    assert cli_text.age(ago(seconds), NOW) == text


def test_until_and_missing_times() -> None:
    assert cli_text.until(ago(-90), NOW) == "in 90s"
    assert cli_text.until(ago(5), NOW) == "due"
    assert cli_text.until(None, NOW) == "-"
    assert cli_text.age("not a time", NOW) == "-"


@pytest.mark.parametrize(
    ("weights", "cells"),
    [
        ({"stable": 100}, (50, 0, 0)),
        ({"stable": 67, "canary": 33}, (34, 0, 16)),  # 33.5 and 16.5 rounded, sum kept at 50
        ({"stable": 0, "canary": 100}, (0, 0, 50)),
        ({"stable": 1, "baseline": 1, "canary": 98}, (0, 0, 50)),
    ],
)
def test_traffic_bar_always_fills_its_width(
    weights: dict[str, int], cells: tuple[int, ...]
) -> None:
    bar = render.traffic_bar(weights).plain
    assert len(bar) == render.BAR_WIDTH
    assert (bar.count("█"), bar.count("▒"), bar.count("░")) == cells


def test_status_shows_an_injected_chaos_fault_and_why_it_ended() -> None:
    from datetime import UTC, datetime

    from rich.console import Console

    from herdsman.cli.render import status_view

    now = datetime(2026, 12, 5, 3, 0, tzinfo=UTC)
    chaos = {
        "action": "killPods",
        "podsKilled": 2,
        "canaryPods": 4,
        "serverGroup": "checkout-v002",
        "stepIndex": 2,
        "phase": "Injected",
        "startedAt": "2026-12-05T02:59:50Z",
        "endsAt": "2026-12-05T03:00:20Z",
        "revision": 2,
        "percent": 50,
    }
    body = {
        "metadata": {"name": "checkout", "namespace": "shop"},
        "spec": {"replicas": 10, "strategy": {"canary": {"steps": []}}},
        "status": {"chaos": chaos},
    }
    console = Console(width=160, record=True)
    console.print(status_view(body, now))
    text = console.export_text()
    assert "injected: killPods 2 of 4 pods of checkout-v002 (step 3), ends in 20s" in text
    body["status"]["chaos"] = {**chaos, "phase": "Removed", "removedReason": "rollout aborted"}
    console = Console(width=160, record=True)
    console.print(status_view(body, now))
    assert "removed (rollout aborted)" in console.export_text()
