"""What `kubectl herdsman analysis` draws, from AnalysisRun objects as the API server returns them.

Like herdsman.cli.render this reads plain dicts, not the pydantic models: a run written by a
newer or older operator, or one the operator has not measured yet, is still shown. Every number
the run holds is drawn; a number that is not there is `-`, never a crash and never a guess.

The same small pieces (`brief`, `score_text`, `failing`) draw the one-line analysis detail in
`kubectl herdsman status`, so both views always agree on what a run says.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from rich.columns import Columns
from rich.console import Group, RenderableType
from rich.constrain import Constrain
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from herdsman.api.judge import ScoreThresholds
from herdsman.cli.text import (
    MISSING,
    RUN_STYLE,
    Obj,
    age,
    as_list,
    as_map,
    facts,
    is_number,
    maps,
    num,
    parse_time,
    span,
    styled,
)

VIEW_WIDTH = 160
JUDGED_PER_TABLE = 3
"""Judged metrics side by side in one judgement table; more continue in another."""

MEASUREMENT_MARK = {
    "Successful": ("✔", "green"),
    "Failed": ("✖", "red"),
    "Inconclusive": ("?", "yellow"),
    "Error": ("!", "red"),
}
CLASSIFICATION_STYLE = {"Pass": "green", "High": "red", "Low": "red", "NoData": "yellow"}
SCORE_STYLE = {"pass": "green", "marginal": "yellow", "fail": "red", "nodata": "yellow"}
FAILING_PHASES = ("Failed", "Error")


# --- small helpers --------------------------------------------------------------------------------


def p_value(value: Any) -> str:
    """p-values to 3 significant digits: 0.0412, 3.72e-12."""
    return f"{value:.3g}" if is_number(value) else num(value)


def _signed(value: Any) -> str:
    text = num(value)
    return f"+{text}" if is_number(value) and value > 0 else text


def _when(value: Any, now: datetime) -> str:
    """`2026-01-01T11:58:00Z (2m ago)`; `-` when absent, the raw text when unparseable."""
    if not value:
        return MISSING
    if parse_time(value) is None:
        return str(value)
    return f"{value} ({age(value, now)} ago)"


def _dry_run_names(spec: Obj) -> set[str]:
    return {str(as_map(d).get("metricName")) for d in as_list(spec.get("dryRun"))}


# --- the pieces `status` reuses -----------------------------------------------------------------


def phase_of(run: Obj) -> str:
    """The run's phase; `Pending` when the operator has not written a status yet."""
    phase = as_map(run.get("status")).get("phase")
    return str(phase) if phase else "Pending"


def phase_text(run: Obj) -> Text:
    phase = phase_of(run)
    return Text(phase, style=RUN_STYLE.get(phase, "bold"))


def score_text(score: Any) -> Text:
    """`0 fail`, `83.33 pass`, `- nodata`; `-` when the run has no score."""
    score = as_map(score)
    if not score:
        return Text(MISSING)
    classification = str(score.get("classification") or MISSING)
    text = Text(num(score.get("score")))
    text.append(f" {classification}", style=SCORE_STYLE.get(classification, ""))
    return text


def failing(run: Obj) -> list[str]:
    """Metrics that fail the run: deciding metrics Failed or in Error, and failed critical ones."""
    status, spec = as_map(run.get("status")), as_map(run.get("spec"))
    dry = _dry_run_names(spec)
    names: list[str] = []
    for result in maps(status.get("metricResults")):
        name = str(result.get("name", "?"))
        dry_run = bool(result.get("dryRun")) or name in dry or "*" in dry
        if result.get("phase") in FAILING_PHASES and not dry_run:
            names.append(name)
    for name in as_list(as_map(status.get("score")).get("criticalFailed")):
        if str(name) not in names:
            names.append(str(name))
    return names


@dataclass(frozen=True)
class Brief:
    """A run in one row: what `status` shows for each of a rollout's runs."""

    phase: Text
    score: Text
    failing: str


def brief(run: Obj) -> Brief:
    names = failing(run)
    return Brief(
        phase=phase_text(run),
        score=score_text(as_map(run.get("status")).get("score")),
        failing=", ".join(names) if names else MISSING,
    )


# --- the full view --------------------------------------------------------------------------------


def analysis_view(run: Obj, now: datetime) -> RenderableType:
    """`kubectl herdsman analysis RUN`: the run, every metric, every judgement and the score."""
    parts: list[RenderableType] = [header(run, now), metrics_table(run)]
    judged = judgements(run)
    if judged is not None:
        parts.append(judged)
    scored = score_panel(run)
    if scored is not None:
        parts.append(scored)
    return Constrain(Group(*parts), width=VIEW_WIDTH)


def header(run: Obj, now: datetime) -> RenderableType:
    meta, spec, status = (
        as_map(run.get("metadata")),
        as_map(run.get("spec")),
        as_map(run.get("status")),
    )
    context = as_map(spec.get("context"))
    grid = facts()
    grid.add_row(
        "AnalysisRun",
        Text(
            "/".join(str(p) for p in (meta.get("namespace"), meta.get("name") or "?") if p),
            style="bold cyan",
        ),
    )
    unmeasured = Text(f"{MISSING} (no status yet: not measured)", style="dim")
    phase = phase_text(run) if status.get("phase") else unmeasured
    if status.get("message"):
        phase.append(f" — {status['message']}", style="")
    grid.add_row("Phase", phase)
    grid.add_row("Started", _when(status.get("startedAt"), now))
    completed = _when(status.get("completedAt"), now)
    started_at = parse_time(status.get("startedAt"))
    completed_at = parse_time(status.get("completedAt"))
    if started_at and completed_at:
        completed += f", took {span((completed_at - started_at).total_seconds())}"
    grid.add_row("Completed", completed)
    rollout = str(context.get("rollout") or MISSING)
    if context.get("namespace") and context.get("namespace") != meta.get("namespace"):
        rollout += f" (namespace {context['namespace']})"
    grid.add_row("Rollout", f"{rollout} · revision {num(context.get('revision'))}")
    grid.add_row(
        "Groups",
        " · ".join(
            f"{role} {context.get(key) or MISSING}"
            for role, key in (
                ("canary", "canaryGroup"),
                ("baseline", "baselineGroup"),
                ("stable", "stableGroup"),
            )
        ),
    )
    grid.add_row("Summary", _summary(status))
    if status.get("dryRunSummary") and as_map(status["dryRunSummary"]).get("count"):
        grid.add_row("Dry-run", _counts(as_map(status["dryRunSummary"])))
    if spec.get("terminate"):
        grid.add_row("Terminate", Text("requested: the run completes with what it has", "yellow"))
    return grid


def _counts(summary: Obj) -> str:
    keys = ("count", "successful", "failed", "inconclusive", "error", "running")
    names = ("metrics", "successful", "failed", "inconclusive", "error", "running")
    return " · ".join(f"{n} {num(summary.get(k))}" for k, n in zip(keys, names, strict=True))


def _summary(status: Obj) -> str:
    text = str(status.get("summary") or MISSING)
    summary = as_map(status.get("runSummary"))
    return f"{text} ({_counts(summary)})" if summary else text


# --- metrics --------------------------------------------------------------------------------------


def _rows(run: Obj) -> list[tuple[str, Obj, Obj]]:
    """(name, spec metric, result) for every metric: the results' order, then unmeasured ones."""
    spec, status = as_map(run.get("spec")), as_map(run.get("status"))
    metrics = {str(m.get("name", "?")): m for m in maps(spec.get("metrics"))}
    results = {str(r.get("name", "?")): r for r in maps(status.get("metricResults"))}
    names = list(results) + [name for name in metrics if name not in results]
    return [(name, metrics.get(name, {}), results.get(name, {})) for name in names]


def _measurement(m: Obj) -> Text:
    mark, style = MEASUREMENT_MARK.get(str(m.get("phase")), ("·", "dim"))
    text = Text(f"{mark} ", style=style)
    value = str(m.get("value") or "")
    if value:
        text.append(value, style="")
    else:  # an Error has no value; what went wrong is the message
        text.append(str(m.get("message") or m.get("phase") or MISSING), style="dim")
    return text


def _measurements(measurements: Sequence[Obj]) -> RenderableType:
    if not measurements:
        return Text(MISSING)
    shown = [_measurement(m) for m in measurements]
    # Short values (a number each) share lines, never split; long ones (a judged summary, an
    # error) get a line each.
    if max(len(t) for t in shown) > 24:
        return Text("\n").join(shown)
    return Columns(shown, padding=(0, 2))


def _name_cell(name: str, *, judged: bool, dry_run: bool) -> Text:
    text = Text(name)
    if judged:
        text.append("\n  judged", style="dim")
    if dry_run:
        text.append("\n  dry-run", style="yellow")
    return text


def metrics_table(run: Obj) -> RenderableType:
    spec = as_map(run.get("spec"))
    dry = _dry_run_names(spec)
    table = Table(box=None, pad_edge=False, header_style="bold")
    table.add_column("METRIC", overflow="fold")
    table.add_column("PHASE", no_wrap=True)
    for column in ("COUNT", "OK", "FAILED", "INCONCL.", "ERRORS", "IN A ROW"):
        table.add_column(column, justify="right", no_wrap=True)
    table.add_column("LAST MEASUREMENTS", ratio=1)
    messages: list[Text] = []
    rows = _rows(run)
    for name, metric, result in rows:
        count = num(result.get("count"))
        limit = metric.get("count")
        if is_number(limit) and result:
            count = f"{count}/{num(limit)}"
        dry_run = bool(result.get("dryRun")) or name in dry or "*" in dry
        judged = "judge" in metric or "judgement" in result
        phase = str(result.get("phase") or MISSING)
        table.add_row(
            _name_cell(name, judged=judged, dry_run=dry_run),
            styled(phase, RUN_STYLE),
            count,
            num(result.get("successful")),
            num(result.get("failed")),
            num(result.get("inconclusive")),
            num(result.get("error")),
            num(result.get("consecutiveError")),
            _measurements(maps(result.get("measurements"))),
        )
        if result.get("message"):
            messages.append(Text.assemble((f"{name}: ", "bold"), str(result["message"])))
    body: list[RenderableType] = [table]
    if not rows:
        body = [Text("no metrics", style="dim")]
    body.extend(messages)
    return Panel(Group(*body), title="Metrics", title_align="left", border_style="dim")


# --- judgements -----------------------------------------------------------------------------------


def _judged(run: Obj) -> list[tuple[str, Obj, Obj]]:
    """(name, judge spec, judgement) of every judged metric, judged yet or not."""
    return [
        (name, as_map(metric.get("judge")), as_map(result.get("judgement")))
        for name, metric, result in _rows(run)
        if "judge" in metric or "judgement" in result
    ]


def _pair(judgement: Obj, key: str, show: Any = num) -> str:
    baseline, canary = as_map(judgement.get("baseline")), as_map(judgement.get("canary"))
    return f"{show(baseline.get(key))} / {show(canary.get(key))}"


def _interval(judgement: Obj, key: str) -> str:
    value = judgement.get(key)
    text = _signed(value) if key == "shift" else num(value)
    lower, upper = judgement.get(f"{key}Lower"), judgement.get(f"{key}Upper")
    if lower is None and upper is None:
        return text
    return f"{text} [{num(lower)}, {num(upper)}]"


def _confidence(judgement: Obj) -> str:
    level = judgement.get("confidence")
    return f"{num(level * 100)}%" if is_number(level) else num(level)


def _p(judgement: Obj) -> Text:
    text = Text(p_value(judgement.get("pValue")))
    if judgement.get("pValue") is not None:
        significant = bool(judgement.get("significant"))
        text.append(
            f" ({'significant' if significant else 'not significant'} at {_confidence(judgement)})",
            style="bold" if significant else "dim",
        )
    return text


def _effect(judgement: Obj) -> str:
    value = judgement.get("effectSize")
    if not is_number(value):
        return num(value)
    return f"{num(value)} ({value * 100:+.1f}% of the baseline median)"


def _tolerance(judge: Obj, judgement: Obj) -> str:
    direction = judge.get("direction") or judgement.get("direction") or "either"
    parts = [f"regression: {direction}"]
    if direction in ("increase", "either"):
        parts.append(f"allowedIncrease {num(judge.get('allowedIncrease', 1.0))}")
    if direction in ("decrease", "either"):
        parts.append(f"allowedDecrease {num(judge.get('allowedDecrease', 1.0))}")
    if judge.get("effectSize"):
        parts.append(f"effectSize {num(judge['effectSize'])}")
    if judge.get("critical", judgement.get("critical")):
        parts.append("critical")
    group = judge.get("group") or judgement.get("group")
    if group:
        parts.append(f"group {group}")
    return " · ".join(parts)


JUDGEMENT_ROWS: tuple[tuple[str, Any], ...] = (
    ("classification", None),
    ("reason", lambda j: str(j.get("reason") or MISSING)),
    ("points (baseline / canary)", lambda j: _pair(j, "inputCount")),
    ("NaN removed", lambda j: _pair(j, "nanRemoved")),
    ("NaN replaced", lambda j: _pair(j, "nanReplaced")),
    ("outliers removed", lambda j: _pair(j, "outliersRemoved")),
    ("compared", lambda j: _pair(j, "count")),
    ("median", lambda j: _pair(j, "median")),
    ("Mann-Whitney U", lambda j: f"{num(j.get('statistic'))} ({j.get('testMethod') or '-'})"),
    ("p-value", _p),
    ("shift [CI]", lambda j: _interval(j, "shift")),
    ("ratio [CI]", lambda j: _interval(j, "ratio")),
    ("effect size", _effect),
)


def _chunks(items: list[Any], size: int) -> Iterator[list[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def judgements(run: Obj) -> RenderableType | None:
    """One column per judged metric (the numbers read down), one row per quantity."""
    judged = _judged(run)
    if not judged:
        return None
    tables: list[RenderableType] = []
    for chunk in _chunks(judged, JUDGED_PER_TABLE):
        table = Table(box=None, pad_edge=False, header_style="bold")
        table.add_column("JUDGEMENT", style="bold", no_wrap=True)
        for name, _, _ in chunk:
            table.add_column(name, overflow="fold")
        table.add_row("configured", *(_tolerance(judge, j) for _, judge, j in chunk))
        for label, show in JUDGEMENT_ROWS:
            cells: list[str | Text] = []
            for _, _, judgement in chunk:
                if not judgement:
                    cells.append(Text("not judged yet" if label == "classification" else MISSING))
                elif show is None:
                    cells.append(
                        styled(
                            str(judgement.get("classification") or MISSING), CLASSIFICATION_STYLE
                        )
                    )
                else:
                    cells.append(show(judgement))
            table.add_row(label, *cells)
        tables.append(table)
    return Panel(Group(*tables), title="Judgement", title_align="left", border_style="dim")


# --- score ----------------------------------------------------------------------------------------


def _thresholds(run: Obj) -> str:
    score = as_map(as_map(run.get("status")).get("score"))
    if "passThreshold" in score or "marginalThreshold" in score:
        passing, marginal = score.get("passThreshold"), score.get("marginalThreshold")
        note = ""
    else:
        configured = as_map(as_map(as_map(run.get("spec")).get("scoring")).get("thresholds"))
        defaults = ScoreThresholds()
        passing = configured.get("pass", defaults.pass_)
        marginal = configured.get("marginal", defaults.marginal)
        note = "" if configured else " (defaults)"
    return f"pass ≥ {num(passing)} · marginal ≥ {num(marginal)} · fail below{note}"


def _names(value: Any) -> str:
    names = [str(n) for n in as_list(value)]
    return ", ".join(names) if names else MISSING


def score_panel(run: Obj) -> RenderableType | None:
    """The score, how it was classified and by which thresholds, and each group's part in it."""
    score = as_map(as_map(run.get("status")).get("score"))
    if not score and not _judged(run):
        return None
    grid = facts()
    headline = score_text(score)
    if score.get("criticalFailure"):
        headline.append(f"  (critical failure: {_names(score.get('criticalFailed'))})", style="red")
    grid.add_row("Score", headline)
    grid.add_row("Reason", str(score.get("reason") or MISSING))
    grid.add_row("Thresholds", _thresholds(run))
    critical = [name for name, judge, _ in _judged(run) if judge.get("critical")]
    if critical or score.get("criticalFailed"):
        failed = _names(score.get("criticalFailed")) if score.get("criticalFailed") else "none"
        grid.add_row("Critical", f"{', '.join(critical) or MISSING} · failed: {failed}")
    parts: list[RenderableType] = [grid]
    groups = maps(score.get("groups"))
    if groups:
        table = Table(box=None, pad_edge=False, header_style="bold")
        table.add_column("GROUP")
        for column in ("WEIGHT", "SHARE", "SCORE"):
            table.add_column(column, justify="right")
        for column in ("PASSED", "FAILED", "EXCLUDED"):
            table.add_column(column)
        for group in groups:
            share = group.get("share")
            table.add_row(
                str(group.get("name", "?")),
                num(group.get("weight")),
                f"{num(share)}%" if is_number(share) else num(share),
                num(group.get("score")),
                _names(group.get("passed")),
                _names(group.get("failed")),
                _names(group.get("excluded")),
            )
        parts.append(table)
    return Panel(Group(*parts), title="Score", title_align="left", border_style="dim")
