"""`kubectl herdsman analysis` (and the analysis rows of `status`) from canned AnalysisRuns."""

from __future__ import annotations

import argparse
import copy
from collections.abc import Iterator
from datetime import UTC, datetime
from io import StringIO
from typing import Any

import pytest
from rich.console import Console, RenderableType

from herdsman.cli import analysis, render
from herdsman.cli import main as cli
from herdsman.cli import text as cli_text
from herdsman.cluster.kube import KubeError

pytestmark = pytest.mark.unit

NOW = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)

CONTEXT = {
    "rollout": "checkout",
    "namespace": "shop",
    "revision": 2,
    "canaryGroup": "checkout-v002",
    "baselineGroup": "checkout-v001-baseline",
    "stableGroup": "checkout-v001",
}


def measurement(phase: str, value: str, message: str = "") -> dict[str, Any]:
    return {
        "phase": phase,
        "value": value,
        "message": message,
        "startedAt": "2026-01-01T11:58:10Z",
        "finishedAt": "2026-01-01T11:58:10Z",
    }


PASSING: dict[str, Any] = {
    "apiVersion": "herdsman.dev/v1alpha1",
    "kind": "AnalysisRun",
    "metadata": {
        "name": "checkout-v002-step1-a0",
        "namespace": "shop",
        "creationTimestamp": "2026-01-01T11:58:00Z",
    },
    "spec": {
        "metrics": [
            {"name": "error-rate", "count": 3, "successCondition": "result[0] < 0.05"},
            {"name": "p99-latency", "count": 2, "successCondition": "result[0] < 0.5"},
        ],
        "dryRun": [{"metricName": "p99-latency"}],
        "context": CONTEXT,
    },
    "status": {
        "phase": "Successful",
        "startedAt": "2026-01-01T11:58:00Z",
        "completedAt": "2026-01-01T11:58:47Z",
        "summary": "1/1 successful, 1 dry-run",
        "runSummary": {
            "count": 1,
            "successful": 1,
            "failed": 0,
            "inconclusive": 0,
            "error": 0,
            "running": 0,
        },
        "dryRunSummary": {
            "count": 1,
            "successful": 0,
            "failed": 1,
            "inconclusive": 0,
            "error": 0,
            "running": 0,
        },
        "metricResults": [
            {
                "name": "error-rate",
                "phase": "Successful",
                "count": 3,
                "successful": 3,
                "failed": 0,
                "inconclusive": 0,
                "error": 2,
                "consecutiveError": 0,
                "measurements": [
                    measurement("Error", "", "could not measure: connection refused"),
                    measurement("Successful", "[0.0123]"),
                    measurement("Error", "", "could not measure: timeout"),
                    measurement("Successful", "[0.0117]"),
                    measurement("Successful", "[0.0131]"),
                ],
            },
            {
                "name": "p99-latency",
                "phase": "Failed",
                "dryRun": True,
                "message": "1 failed (more than failureLimit 0); last: ",
                "count": 1,
                "successful": 0,
                "failed": 1,
                "inconclusive": 0,
                "error": 0,
                "consecutiveError": 0,
                "measurements": [measurement("Failed", "[0.731]")],
            },
        ],
    },
}

HIGH_JUDGEMENT: dict[str, Any] = {
    "name": "latency-vs-baseline",
    "group": "latency",
    "critical": True,
    "direction": "increase",
    "classification": "High",
    "reason": "canary higher (p=0.000155 < 0.05, ratio 1.32), beyond allowedIncrease 1.1",
    "baseline": {
        "inputCount": 9,
        "nanRemoved": 1,
        "nanReplaced": 0,
        "outliersRemoved": 2,
        "count": 6,
        "median": 0.09885,
    },
    "canary": {
        "inputCount": 8,
        "nanRemoved": 0,
        "nanReplaced": 0,
        "outliersRemoved": 1,
        "count": 7,
        "median": 0.13021,
    },
    "confidence": 0.95,
    "testMethod": "exact",
    "statistic": 42.0,
    "pValue": 0.000155,
    "significant": True,
    "shift": 0.031263,
    "shiftLower": 0.030012,
    "shiftUpper": 0.031861,
    "ratio": 1.3163,
    "ratioLower": 1.3036,
    "ratioUpper": 1.3223,
    "effectSize": 0.31726,
}

FAILED: dict[str, Any] = {
    "metadata": {"name": "checkout-v003-step1-a0", "namespace": "shop"},
    "spec": {
        "metrics": [
            {"name": "latency-threshold", "count": 3, "successCondition": "result[0] < 0.2"},
            {
                "name": "latency-vs-baseline",
                "count": 3,
                "judge": {"direction": "increase", "allowedIncrease": 1.1, "critical": True},
            },
            {"name": "errors-vs-baseline", "judge": {"direction": "either", "group": "errors"}},
        ],
        "scoring": {
            "groups": [{"name": "latency", "weight": 60}, {"name": "errors", "weight": 40}],
            "thresholds": {"pass": 80, "marginal": 60},
        },
        "context": {**CONTEXT, "revision": 3, "canaryGroup": "checkout-v003"},
    },
    "status": {
        "phase": "Failed",
        "message": "critical metric failed: latency-vs-baseline",
        "startedAt": "2026-01-01T11:59:00Z",
        "completedAt": "2026-01-01T11:59:10.024226Z",
        "summary": "0/3 successful, 1 failed, 2 running",
        "metricResults": [
            {
                "name": "latency-threshold",
                "phase": "Running",
                "count": 1,
                "successful": 1,
                "measurements": [measurement("Successful", "[0.13001614932285585]")],
            },
            {
                "name": "latency-vs-baseline",
                "phase": "Failed",
                "message": "1 failed (more than failureLimit 0)",
                "count": 1,
                "failed": 1,
                "consecutiveError": 0,
                "measurements": [
                    measurement(
                        "Failed",
                        "baseline median 0.09885 (n=6), canary median 0.1302 (n=7), ratio 1.316",
                    )
                ],
                "judgement": HIGH_JUDGEMENT,
            },
        ],
        "score": {
            "score": 0.0,
            "classification": "fail",
            "reason": "critical metric(s) failed: latency-vs-baseline (High)",
            "passThreshold": 80.0,
            "marginalThreshold": 60.0,
            "criticalFailure": True,
            "criticalFailed": ["latency-vs-baseline"],
            "groups": [
                {
                    "name": "latency",
                    "weight": 60.0,
                    "share": 100.0,
                    "score": 0.0,
                    "passed": [],
                    "failed": ["latency-vs-baseline"],
                    "excluded": [],
                },
                {"name": "errors", "weight": 40.0},
            ],
        },
    },
}

NO_STATUS: dict[str, Any] = {
    "metadata": {"name": "checkout-v004-step1-a0", "namespace": "shop"},
    "spec": {
        "metrics": [
            {"name": "error-rate", "count": 3},
            {"name": "latency-vs-baseline", "judge": {"direction": "increase"}},
        ],
        "context": {"rollout": "checkout", "namespace": "shop", "revision": 4},
    },
}


def shown(renderable: RenderableType, width: int = 160) -> str:
    console = Console(file=StringIO(), width=width, record=True)
    console.print(renderable)
    return console.export_text()


def line_with(text: str, needle: str) -> str:
    hits = [line for line in text.splitlines() if needle in line]
    assert hits, f"{needle!r} not in:\n{text}"
    return hits[0]


def row(text: str, first: str) -> list[str]:
    """The cells of the row whose first cell is `first`, panel borders dropped."""
    for line in text.splitlines():
        cells = [c for c in line.split() if c != "│"]
        if cells and cells[0] == first:
            return cells
    raise AssertionError(f"no row starting with {first!r} in:\n{text}")


# --- the full view --------------------------------------------------------------------------------


def test_a_passing_threshold_run_shows_its_header_counts_and_measurements() -> None:
    out = shown(analysis.analysis_view(PASSING, NOW))
    assert "shop/checkout-v002-step1-a0" in line_with(out, "AnalysisRun")
    assert "Successful" in line_with(out, "Phase")
    assert "2026-01-01T11:58:00Z (2m ago)" in line_with(out, "Started")
    assert "2026-01-01T11:58:47Z (73s ago), took 47s" in line_with(out, "Completed")
    assert "checkout · revision 2" in line_with(out, "Rollout")
    assert (
        "canary checkout-v002 · baseline checkout-v001-baseline · stable checkout-v001"
        in line_with(out, "Groups")
    )
    assert "1/1 successful, 1 dry-run (metrics 1 · successful 1 · failed 0" in line_with(
        out, "Summary"
    )
    assert "metrics 1 · successful 0 · failed 1" in line_with(out, "Dry-run")
    # name, phase, count/limit, successful, failed, inconclusive, errors, errors in a row
    assert row(out, "error-rate")[:8] == [
        "error-rate",
        "Successful",
        "3/3",
        "3",
        "0",
        "0",
        "2",
        "0",
    ]
    # Oldest first; an error shows what went wrong in place of a value.
    order = [
        "! could not measure: connection refused",
        "✔ [0.0123]",
        "! could not measure: timeout",
        "✔ [0.0117]",
        "✔ [0.0131]",
    ]
    assert [out.index(m) for m in order] == sorted(out.index(m) for m in order)
    assert row(out, "p99-latency")[:8] == ["p99-latency", "Failed", "1/2", "0", "1", "0", "0", "0"]
    assert "✖ [0.731]" in line_with(out, "p99-latency")
    assert "dry-run" in out.split("p99-latency", 1)[1].splitlines()[1]
    assert "p99-latency: 1 failed (more than failureLimit 0)" in out
    # Nothing judged: no judgement table, no score.
    assert "Judgement" not in out
    assert "Score" not in out


def test_a_failed_judged_run_shows_every_number_of_its_judgement() -> None:
    out = shown(analysis.analysis_view(FAILED, NOW))
    assert "Failed — critical metric failed: latency-vs-baseline" in line_with(out, "Phase")
    assert "took 10s" in line_with(out, "Completed")
    assert "checkout · revision 3" in out
    assert row(out, "latency-vs-baseline")[:8] == [
        "latency-vs-baseline",
        "Failed",
        "1/3",
        "-",  # the result carries no `successful`: shown missing, not invented
        "1",
        "-",
        "-",
        "0",
    ]
    assert "✖ baseline median 0.09885 (n=6), canary median 0.1302 (n=7), ratio 1.316" in out
    assert "✔ [0.13001614932285585]" in out  # the stored value, unrounded

    def judged(label: str) -> str:
        return line_with(out, f"│ {label} ")

    assert judged("JUDGEMENT").split()[2:-1] == ["latency-vs-baseline", "errors-vs-baseline"]
    assert "regression: increase · allowedIncrease 1.1 · critical" in judged("configured")
    assert "regression: either · allowedIncrease 1 · allowedDecrease 1" in judged("configured")
    assert "High" in judged("classification")
    assert "not judged yet" in judged("classification")
    assert "canary higher (p=0.000155 < 0.05, ratio 1.32)" in judged("reason")
    assert "9 / 8" in judged("points (baseline / canary)")
    assert "1 / 0" in judged("NaN removed")
    assert "0 / 0" in judged("NaN replaced")
    assert "2 / 1" in judged("outliers removed")
    assert "6 / 7" in judged("compared")
    assert "0.09885 / 0.1302" in judged("median")
    assert "42 (exact)" in judged("Mann-Whitney U")
    assert "0.000155 (significant at 95%)" in judged("p-value")
    assert "+0.03126 [0.03001, 0.03186]" in judged("shift [CI]")
    assert "1.316 [1.304, 1.322]" in judged("ratio [CI]")
    assert "0.3173 (+31.7% of the baseline median)" in judged("effect size")

    assert "0 fail  (critical failure: latency-vs-baseline)" in line_with(out, "│ Score ")
    assert "critical metric(s) failed: latency-vs-baseline (High)" in line_with(out, "Reason")
    assert "pass ≥ 80 · marginal ≥ 60 · fail below" in line_with(out, "Thresholds")
    assert "(defaults)" not in out
    assert "latency-vs-baseline · failed: latency-vs-baseline" in line_with(out, "Critical")
    score = out.split("─ Score")[1]
    assert row(score, "latency") == ["latency", "60", "100%", "0", "-", "latency-vs-baseline", "-"]
    assert row(score, "errors") == ["errors", "40", "-", "-", "-", "-", "-"]


def test_a_run_without_status_lists_its_metrics_with_dashes() -> None:
    out = shown(analysis.analysis_view(NO_STATUS, NOW))
    assert "- (no status yet: not measured)" in line_with(out, "Phase")
    assert line_with(out, "Started").split() == ["Started", "-"]
    assert line_with(out, "Completed").split() == ["Completed", "-"]
    assert "canary - · baseline - · stable -" in line_with(out, "Groups")
    assert line_with(out, "Summary").split() == ["Summary", "-"]
    assert row(out, "error-rate") == ["error-rate", *["-"] * 8]
    assert row(out, "latency-vs-baseline") == ["latency-vs-baseline", *["-"] * 8]
    assert "not judged yet" in line_with(out, "classification")
    assert line_with(out, "│ p-value").split()[1:3] == ["p-value", "-"]
    assert line_with(out, "│ Score ").split()[1:3] == ["Score", "-"]
    assert "pass ≥ 75 · marginal ≥ 50 · fail below (defaults)" in out


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    if isinstance(value, dict):
        for key, item in value.items():
            yield (*prefix, key)
            yield from _paths(item, (*prefix, key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield (*prefix, i)
            yield from _paths(item, (*prefix, i))


def _replaced(body: dict[str, Any], path: tuple[Any, ...], new: Any) -> dict[str, Any]:
    changed = copy.deepcopy(body)
    target: Any = changed
    for key in path[:-1]:
        target = target[key]
    if new is _DELETE:
        del target[path[-1]]
    else:
        target[path[-1]] = new
    return changed


_DELETE = object()


ODD_VALUES: tuple[Any, ...] = (None, "text", [], {}, 7, float("nan"), True)


@pytest.mark.parametrize("base", [PASSING, FAILED, NO_STATUS], ids=["passing", "failed", "new"])
def test_any_field_missing_or_of_another_type_never_crashes(base: dict[str, Any]) -> None:
    # Every field deleted, and every field replaced by one odd value (taking turns).
    name = base["metadata"]["name"]
    refs = _rollout_with([base])  # names the run even when its metadata is gone
    for i, path in enumerate(_paths(base)):
        for new in (_DELETE, ODD_VALUES[i % len(ODD_VALUES)]):
            body = _replaced(base, path, new)
            try:
                shown(analysis.analysis_view(body, NOW))
                if new is not _DELETE:
                    shown(render.status_view(refs, NOW, {name: body}))
            except Exception as err:  # pragma: no cover - the failure message is the point
                raise AssertionError(f"{path} set to {new!r}: {err!r}") from err


def test_numbers_read_as_numbers() -> None:
    assert [cli_text.num(v) for v in (None, 3, 3.0, 0.000155, 1.31634, 123456.0, "x", True)] == [
        "-",
        "3",
        "3",
        "0.000155",
        "1.316",
        "1.235e+05",
        "x",
        "yes",
    ]
    assert analysis.p_value(3.715691111961505e-12) == "3.72e-12"
    assert analysis.p_value(None) == "-"


# --- status ---------------------------------------------------------------------------------------


def _rollout_with(runs: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "metadata": {"name": "checkout", "namespace": "shop"},
        "spec": {"strategy": {"canary": {"steps": [{"setWeight": 20}]}}},
        "status": {
            "phase": "Progressing",
            "analysisRuns": [
                {"name": r["metadata"]["name"], "kind": "step", "stepIndex": 1, "phase": "Running"}
                for r in runs
            ],
        },
    }


def _by_name(runs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {r["metadata"]["name"]: r for r in runs}


def test_status_shows_each_runs_phase_score_and_failing_metrics() -> None:
    runs = [PASSING, FAILED, NO_STATUS]
    out = shown(render.status_view(_rollout_with(runs), NOW, _by_name(runs)), width=120)
    assert [c for c in line_with(out, "ANALYSIS RUN").split() if c != "│"] == [
        "ANALYSIS",
        "RUN",
        "KIND",
        "STEP",
        "PHASE",
        "SCORE",
        "FAILING",
    ]
    # The run's own phase, not the one the rollout copied; a failing dry-run metric does not fail.
    assert row(out, "checkout-v002-step1-a0") == [
        "checkout-v002-step1-a0",
        "step",
        "2",
        "Successful",
        "-",
        "-",
    ]
    assert row(out, "checkout-v003-step1-a0") == [
        "checkout-v003-step1-a0",
        "step",
        "2",
        "Failed",
        "0",
        "fail",
        "latency-vs-baseline",
    ]
    assert row(out, "checkout-v004-step1-a0")[3:] == ["Pending", "-", "-"]


def test_status_without_run_details_keeps_its_layout_and_a_gone_run_is_dashes() -> None:
    body = _rollout_with([PASSING, FAILED])
    plain = shown(render.status_view(body, NOW), width=120)
    assert row(plain, "checkout-v003-step1-a0") == [
        "checkout-v003-step1-a0",
        "step",
        "2",
        "Running",
    ]
    assert "SCORE" not in plain
    partial = shown(render.status_view(body, NOW, _by_name([PASSING])), width=120)
    assert row(partial, "checkout-v003-step1-a0")[3:] == ["Running", "-", "-"]


def test_failing_names_failed_and_errored_metrics_and_critical_failures() -> None:
    run = copy.deepcopy(FAILED)
    run["status"]["metricResults"][0]["phase"] = "Error"
    run["status"]["score"]["criticalFailed"] = ["latency-vs-baseline", "cpu-vs-baseline"]
    assert analysis.failing(run) == ["latency-threshold", "latency-vs-baseline", "cpu-vs-baseline"]
    assert analysis.failing(PASSING) == []
    assert analysis.failing(NO_STATUS) == []


# --- the command ----------------------------------------------------------------------------------


class FakeRest:
    """Answers GETs by the last path segment (rollouts and runs share one dict)."""

    def __init__(self, objects: dict[str, dict[str, Any]]) -> None:
        self.objects = objects
        self.gets: list[str] = []
        self.fail_runs: Exception | None = None

    def get(self, path: str, **_: Any) -> dict[str, Any] | None:
        self.gets.append(path)
        if self.fail_runs and "/analysisruns/" in path:
            raise self.fail_runs
        return self.objects.get(path.rsplit("/", 1)[-1])


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> FakeRest:
    older = copy.deepcopy(FAILED)
    older["metadata"].update(name="checkout-v003-background-a0")
    older["metadata"]["creationTimestamp"] = "2026-01-01T11:58:30Z"
    newer = copy.deepcopy(FAILED)
    newer["metadata"]["creationTimestamp"] = "2026-01-01T11:59:00Z"
    rollout = _rollout_with([newer, older])  # the list is in reconcile order, not creation order
    rollout["status"]["analysisRuns"].append({"name": "checkout-v003-step0-a0", "kind": "step"})
    rest = FakeRest(
        {
            "checkout": rollout,
            "empty": {"metadata": {"name": "empty"}, "status": {}},
            newer["metadata"]["name"]: newer,
            older["metadata"]["name"]: older,
            PASSING["metadata"]["name"]: PASSING,
        }
    )

    def connect(args: argparse.Namespace) -> tuple[FakeRest, str]:
        return rest, args.namespace or "shop"

    monkeypatch.setattr(cli, "connect", connect)
    return rest


def test_analysis_run_by_name(fake: FakeRest, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["analysis", "checkout-v002-step1-a0"]) == 0
    out = capsys.readouterr().out
    assert "shop/checkout-v002-step1-a0" in out
    assert fake.gets == [
        "/apis/herdsman.dev/v1alpha1/namespaces/shop/analysisruns/checkout-v002-step1-a0"
    ]


def test_analysis_of_a_rollout_is_its_newest_run(
    fake: FakeRest, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["analysis", "--rollout", "checkout", "-n", "shop"]) == 0
    out = capsys.readouterr().out
    assert "shop/checkout-v003-step1-a0" in line_with(out, "AnalysisRun")
    assert "0.000155" in line_with(out, "p-value")
    newest = fake.objects["checkout-v003-step1-a0"]
    newest["metadata"]["creationTimestamp"] = "2026-01-01T11:58:00Z"
    assert cli.main(["analysis", "--rollout", "checkout"]) == 0
    assert "checkout-v003-background-a0" in line_with(capsys.readouterr().out, "AnalysisRun")


@pytest.mark.parametrize(
    ("argv", "code", "message"),
    [
        (["analysis"], 2, "name an AnalysisRun, or a rollout with --rollout (not both)"),
        (["analysis", "x", "--rollout", "checkout"], 2, "name an AnalysisRun, or a rollout"),
        (["analysis", "nope"], 1, "analysisrun shop/nope not found"),
        (["analysis", "--rollout", "nope"], 1, "rollout shop/nope not found"),
        (["analysis", "--rollout", "empty"], 1, "rollout shop/empty lists no analysis run"),
    ],
)
def test_analysis_refusals_are_one_line(
    fake: FakeRest, capsys: pytest.CaptureFixture[str], argv: list[str], code: int, message: str
) -> None:
    assert cli.main(argv) == code
    captured = capsys.readouterr()
    assert captured.err.startswith(f"error: {message}")
    assert len(captured.err.strip().splitlines()) == 1
    assert captured.out == ""


def test_status_reads_the_runs_and_survives_not_being_allowed_to(
    fake: FakeRest, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["status", "checkout"]) == 0
    out = capsys.readouterr().out
    assert row(out, "checkout-v003-step1-a0")[3:] == ["Failed", "0", "fail", "latency-vs-baseline"]
    assert row(out, "checkout-v003-step0-a0")[3:] == ["Pending", "-", "-"]  # listed, gone
    fake.fail_runs = KubeError(403, "Forbidden", "cannot get analysisruns")
    assert cli.main(["status", "checkout"]) == 0
    captured = capsys.readouterr()
    assert captured.err == ""
    assert row(captured.out, "checkout-v003-step1-a0") == [
        "checkout-v003-step1-a0",
        "step",
        "2",
        "Running",
    ]


def test_analysis_watch_redraws_until_interrupted(
    fake: FakeRest, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    run = fake.objects["checkout-v002-step1-a0"] = copy.deepcopy(PASSING)
    run["status"]["phase"] = "Running"
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        if len(sleeps) == 2:
            run["status"]["phase"] = "Successful"
        if len(sleeps) == 3:
            raise KeyboardInterrupt

    monkeypatch.setattr("herdsman.cli.main.time.sleep", sleep)
    assert cli.main(["analysis", "checkout-v002-step1-a0", "--watch", "--interval", "0.5"]) == 0
    assert sleeps == [0.5, 0.5, 0.5]
    assert len(fake.gets) == 3  # the first draw, then one per redraw until the interrupt
    assert "Successful" in line_with(capsys.readouterr().out, "Phase")
