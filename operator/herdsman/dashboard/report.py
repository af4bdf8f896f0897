"""The canary report of one AnalysisRun, and the dashboard's figures, built with plotly.

Every figure is a plotly figure made here with plotly's own API and sent to the browser as
JSON, where the plotly.js bundled with the Python package draws it: no charting code of ours.

For a judged metric (canary against a fresh baseline) the report draws, side by side:

* Over time: the points the judge compared, baseline and canary, on one time axis. A steady
  gap between the two lines is what the test detects; a spike in one is what it shrugs off.
* Distribution: a box plot per group with every point beside it: the median (the line), the
  middle half of the points (the box), and the spread. Ranks of these points are what the
  Mann-Whitney test compares.
* Shift: the Hodges-Lehmann estimate of canary minus baseline with its confidence interval
  (the bar), against zero (no change) and the change the metric allows (dashed). An interval
  clear of the allowance is a regression; one that straddles zero is no evidence of change.

A metric measured against conditions (thresholds) gets its measurements over time instead.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from herdsman.dashboard.views import Point, run_row

Obj = Mapping[str, Any]
COLOURS = {"stable": "#1f77b4", "baseline": "#1f77b4", "canary": "#ff7f0e", "other": "#7f7f7f"}
PHASE_COLOURS = {
    "Successful": "#2ca02c",
    "Failed": "#d62728",
    "Inconclusive": "#bcbd22",
    "Error": "#7f7f7f",
}


def _map(value: Any) -> Obj:
    return value if isinstance(value, Mapping) else {}


def to_json(figure: go.Figure) -> dict[str, Any]:
    """The figure as plotly.js takes it, without the default theme (8 kB per figure we do not
    need: plotly.js has its own defaults)."""
    body: dict[str, Any] = figure.to_plotly_json()
    body.get("layout", {}).pop("template", None)
    return {"data": body.get("data", []), "layout": body.get("layout", {})}


def _layout(figure: go.Figure, height: int) -> None:
    figure.update_layout(
        height=height,
        margin={"l": 50, "r": 20, "t": 40, "b": 40},
        legend={"orientation": "h", "y": -0.2},
        paper_bgcolor="white",
        plot_bgcolor="#fafafa",
    )


def weights_figure(points: Sequence[Point]) -> dict[str, Any]:
    """Traffic per role over time, as steps: each point holds until the next change."""
    figure = go.Figure()
    times = [p.at for p in points]
    for role in ("stable", "canary", "baseline"):
        values = [p.weights.get(role, 0) for p in points]
        if role != "stable" and not any(values):
            continue
        figure.add_trace(
            go.Scatter(
                x=times,
                y=values,
                name=role,
                mode="lines+markers",
                line={
                    "shape": "hv",
                    "color": COLOURS[role],
                    "dash": "dot" if role == "baseline" else "solid",
                },
                hovertemplate="%{y}%<extra>" + role + "</extra>",
            )
        )
    figure.update_yaxes(range=[0, 105], title_text="traffic %")
    _layout(figure, 260)
    return to_json(figure)


def _times(stamps: Sequence[float]) -> list[str]:
    return [datetime.fromtimestamp(t, UTC).isoformat() for t in stamps]


def _number(text: str) -> float | None:
    """The first number in a measurement's value text ("[0.02]", "0.02"), for plotting."""
    cleaned = text.strip().strip("[]").split(",")[0].strip()
    try:
        value = float(cleaned)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def judged_figure(judgement: Obj, spec: Obj) -> dict[str, Any]:
    """Over time | distribution | shift, for one judged metric (see the module docstring)."""
    figure = make_subplots(
        rows=1,
        cols=3,
        column_widths=[0.5, 0.3, 0.2],
        subplot_titles=("over time", "distribution", "shift (Hodges-Lehmann)"),
        horizontal_spacing=0.08,
    )
    for role in ("baseline", "canary"):
        series = _map(judgement.get(f"{role}Series"))
        values = list(series.get("values") or [])
        figure.add_trace(
            go.Scatter(
                x=_times(series.get("timestamps") or []),
                y=values,
                name=role,
                legendgroup=role,
                mode="lines+markers",
                marker={"size": 4, "color": COLOURS[role]},
                line={"color": COLOURS[role]},
            ),
            row=1,
            col=1,
        )
        figure.add_trace(
            go.Box(
                y=values,
                name=role,
                legendgroup=role,
                showlegend=False,
                boxpoints="all",
                jitter=0.4,
                pointpos=-1.6,
                marker={"size": 3, "color": COLOURS[role]},
                line={"color": COLOURS[role]},
            ),
            row=1,
            col=2,
        )
    shift = judgement.get("shift")
    lower, upper = judgement.get("shiftLower"), judgement.get("shiftUpper")
    if shift is not None:
        error: dict[str, Any] = {"type": "data", "visible": False}
        if lower is not None and upper is not None:
            error = {
                "type": "data",
                "symmetric": False,
                "array": [upper - shift],
                "arrayminus": [shift - lower],
                "width": 8,
            }
        figure.add_trace(
            go.Scatter(
                x=["canary - baseline"],
                y=[shift],
                name="shift",
                mode="markers",
                marker={"size": 10, "color": "#333"},
                error_y=error,
                showlegend=False,
                customdata=[[lower, upper]],
                hovertemplate="shift %{y:.4g}<br>interval [%{customdata[0]:.4g},"
                " %{customdata[1]:.4g}]<extra></extra>",
            ),
            row=1,
            col=3,
        )
        figure.add_hline(y=0, line={"color": "#999", "width": 1}, row=1, col=3)
        for bound, label in _allowances(judgement, spec):
            figure.add_hline(
                y=bound,
                line={"color": "#d62728", "dash": "dash", "width": 1},
                annotation_text=label,
                annotation_font_size=10,
                row=1,
                col=3,
            )
    _layout(figure, 320)
    return to_json(figure)


def _allowances(judgement: Obj, spec: Obj) -> list[tuple[float, str]]:
    """The shifts the metric tolerates, in its own units: (ratio - 1) x |baseline median|."""
    median = _map(judgement.get("baseline")).get("median")
    if median is None or median == 0:
        return []
    direction = judgement.get("direction") or spec.get("direction") or "either"
    out = []
    if direction in ("increase", "either"):
        ratio = float(spec.get("allowedIncrease", 1.0) or 1.0)
        out.append(((ratio - 1) * abs(median), f"allowed +{(ratio - 1) * 100:.0f}%"))
    if direction in ("decrease", "either"):
        ratio = float(spec.get("allowedDecrease", 1.0) or 1.0)
        out.append(((ratio - 1) * abs(median), f"allowed {(ratio - 1) * 100:.0f}%"))
    return out


def measurements_figure(result: Obj) -> dict[str, Any]:
    """A threshold metric's measurements over time, coloured by verdict."""
    figure = go.Figure()
    rows = [m for m in result.get("measurements") or [] if isinstance(m, Mapping)]
    for phase, colour in PHASE_COLOURS.items():
        picked = [(m, _number(str(m.get("value", "")))) for m in rows if m.get("phase") == phase]
        picked = [(m, v) for m, v in picked if v is not None]
        if not picked:
            continue
        figure.add_trace(
            go.Scatter(
                x=[m.get("finishedAt") for m, _ in picked],
                y=[v for _, v in picked],
                name=phase,
                mode="markers",
                marker={"size": 9, "color": colour},
            )
        )
    _layout(figure, 240)
    return to_json(figure)


def _number_or_none(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) else None


def canary_report(run: Obj) -> dict[str, Any]:
    """Everything the report page shows of one AnalysisRun, figures included."""
    spec, status = _map(run.get("spec")), _map(run.get("status"))
    metrics = {m.get("name"): m for m in spec.get("metrics") or [] if isinstance(m, Mapping)}
    out = run_row(run)
    context = _map(spec.get("context"))
    out.update(
        {
            "startedAt": status.get("startedAt"),
            "completedAt": status.get("completedAt"),
            "canaryGroup": context.get("canaryGroup"),
            "baselineGroup": context.get("baselineGroup"),
            "stableGroup": context.get("stableGroup"),
            "revision": context.get("revision"),
            "score": _score(_map(status.get("score"))),
            "metrics": [],
        }
    )
    for result in status.get("metricResults") or []:
        if not isinstance(result, Mapping):
            continue
        metric = _map(metrics.get(result.get("name")))
        judgement = _map(result.get("judgement"))
        judge = _map(metric.get("judge"))
        entry: dict[str, Any] = {
            "name": result.get("name"),
            "phase": result.get("phase"),
            "message": result.get("message", ""),
            "dryRun": bool(result.get("dryRun")),
            "counts": {
                k: result.get(k, 0) for k in ("successful", "failed", "inconclusive", "error")
            },
            "judged": bool(judge),
            "condition": metric.get("successCondition") or metric.get("failureCondition"),
        }
        if judgement:
            entry["verdict"] = judgement.get("classification")
            entry["reason"] = judgement.get("reason")
            entry["numbers"] = _numbers(judgement, judge)
            entry["figure"] = judged_figure(judgement, judge)
        else:
            last = (result.get("measurements") or [{}])[-1]
            entry["verdict"] = result.get("phase")
            entry["reason"] = result.get("message") or _map(last).get("message", "")
            entry["figure"] = measurements_figure(result)
        out["metrics"].append(entry)
    return out


def _numbers(judgement: Obj, judge: Obj) -> dict[str, Any]:
    base, canary = _map(judgement.get("baseline")), _map(judgement.get("canary"))
    return {
        "baselineMedian": _number_or_none(base.get("median")),
        "canaryMedian": _number_or_none(canary.get("median")),
        "baselineCount": base.get("count"),
        "canaryCount": canary.get("count"),
        "u": _number_or_none(judgement.get("statistic")),
        "pValue": _number_or_none(judgement.get("pValue")),
        "confidence": judgement.get("confidence"),
        "shift": _number_or_none(judgement.get("shift")),
        "shiftLower": _number_or_none(judgement.get("shiftLower")),
        "shiftUpper": _number_or_none(judgement.get("shiftUpper")),
        "ratio": _number_or_none(judgement.get("ratio")),
        "ratioLower": _number_or_none(judgement.get("ratioLower")),
        "ratioUpper": _number_or_none(judgement.get("ratioUpper")),
        "effectSize": _number_or_none(judgement.get("effectSize")),
        "direction": judgement.get("direction"),
        "allowedIncrease": judge.get("allowedIncrease", 1.0),
        "allowedDecrease": judge.get("allowedDecrease", 1.0),
        "critical": bool(judgement.get("critical")),
        "group": judgement.get("group", "default"),
    }


def _score(score: Obj) -> dict[str, Any] | None:
    if not score:
        return None
    return {
        "score": score.get("score"),
        "classification": score.get("classification"),
        "reason": score.get("reason", ""),
        "pass": score.get("passThreshold"),
        "marginal": score.get("marginalThreshold"),
        "criticalFailed": list(score.get("criticalFailed") or []),
        "groups": [
            {
                k: g.get(k)
                for k in ("name", "weight", "share", "score", "passed", "failed", "excluded")
            }
            for g in score.get("groups") or []
            if isinstance(g, Mapping)
        ],
    }
