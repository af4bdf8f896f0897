"""What `get` and `status` draw, from Rollout objects exactly as the API server returns them.

Rendering reads plain dicts rather than the pydantic models on purpose: the plugin must show a
rollout written by a newer (or older) operator, with status fields it does not know, and a
rollout whose spec it cannot parse. Whatever is there is shown; whatever is missing is left out.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from pydantic import ValidationError
from rich.console import Group, RenderableType
from rich.constrain import Constrain
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from herdsman.api.chaos import HttpFault, describe_fault
from herdsman.api.rollout import CanaryStep
from herdsman.cli import analysis
from herdsman.cli.text import (
    RUN_STYLE,
    Obj,
    age,
    as_list,
    as_map,
    facts,
    parse_time,
    span,
    styled,
    until,
)
from herdsman.engine.canary import describe

VIEW_WIDTH = 110

PHASE_STYLE = {
    "Healthy": "green",
    "Progressing": "cyan",
    "Paused": "yellow",
    "Degraded": "red",
}
ROLE_STYLE = {
    "stable": "blue",
    "canary": "yellow",
    "baseline": "magenta",
    "active": "blue",
    "preview": "yellow",
    "old": "dim",
}


def strategy_of(body: Obj) -> str:
    strategy = as_map(as_map(body.get("spec")).get("strategy"))
    if "blueGreen" in strategy:
        return "blueGreen"
    if "canary" in strategy:
        return "canary"
    return "-"


def _desired(body: Obj) -> int:
    value = as_map(body.get("spec")).get("replicas", 1)
    return value if isinstance(value, int) else 0


# --- get -----------------------------------------------------------------------------------------


def rollouts_table(items: Sequence[Obj], now: datetime, *, namespaces: bool = False) -> Table:
    """`kubectl herdsman get`: one row per rollout."""
    table = Table(box=None, pad_edge=False, header_style="bold")
    if namespaces:
        table.add_column("NAMESPACE")
    for column in ("NAME", "STRATEGY", "PHASE", "STEP", "WEIGHT", "STABLE", "CANARY"):
        table.add_column(column)
    table.add_column("AVAILABLE", justify="right")
    table.add_column("AGE", justify="right")
    for body in items:
        meta, status = as_map(body.get("metadata")), as_map(body.get("status"))
        phase = str(status.get("phase") or "-")
        blue_green = as_map(status.get("blueGreen"))
        new_group = status.get("canaryServerGroup") or blue_green.get("previewServerGroup")
        row: list[str | Text] = [str(meta.get("namespace", ""))] if namespaces else []
        row += [
            str(meta.get("name", "?")),
            strategy_of(body),
            styled(phase, PHASE_STYLE),
            str(status.get("step") or "-"),
            f"{status.get('canaryWeight', 0)}%",
            str(status.get("stableServerGroup") or "-"),
            str(new_group or "-"),
            f"{status.get('availableReplicas', 0)}/{_desired(body)}",
            age(meta.get("creationTimestamp"), now),
        ]
        table.add_row(*row)
    return table


def summary(body: Obj, now: datetime) -> RenderableType:
    """`kubectl herdsman get NAME`: the one-screen answer to "where is it?"."""
    meta, status = as_map(body.get("metadata")), as_map(body.get("status"))
    grid = facts()
    grid.add_row("Name", f"{meta.get('namespace', '')}/{meta.get('name', '')}")
    grid.add_row("Strategy", strategy_of(body))
    grid.add_row("Phase", _phase_text(status))
    grid.add_row("Step", str(status.get("step") or "-"))
    grid.add_row("Weight", _weights_line(status))
    grid.add_row("Stable", str(status.get("stableServerGroup") or "-"))
    grid.add_row("Canary", str(status.get("canaryServerGroup") or "-"))
    grid.add_row("Available", f"{status.get('availableReplicas', 0)}/{_desired(body)}")
    grid.add_row("Age", age(meta.get("creationTimestamp"), now))
    return grid


def _phase_text(status: Obj) -> Text:
    phase = str(status.get("phase") or "Unknown")
    text = Text(phase, style=PHASE_STYLE.get(phase, "bold"))
    if status.get("message"):
        text.append(f" — {status['message']}", style="")
    return text


def _weights_line(status: Obj) -> str:
    w = as_map(status.get("weights"))
    parts = [f"stable {w.get('stable', 100)}%", f"canary {w.get('canary', 0)}%"]
    if w.get("baseline"):
        parts.append(f"baseline {w['baseline']}%")
    return ", ".join(parts)


# --- status ----------------------------------------------------------------------------------------


def status_view(body: Obj, now: datetime, runs: Mapping[str, Obj] | None = None) -> RenderableType:
    """`kubectl herdsman status`: everything a person needs to decide promote or abort.

    `runs` are the AnalysisRuns the status lists, by name, when the caller could read them:
    each run's row then also shows its score and failing metrics.
    """
    spec = as_map(body.get("spec"))
    status = as_map(body.get("status"))
    strategy = as_map(spec.get("strategy"))
    parts: list[RenderableType] = [_header(body, now)]
    if "blueGreen" in strategy:
        parts.append(_blue_green(as_map(strategy["blueGreen"]), status, now))
    elif "canary" in strategy:
        parts.append(_steps(as_map(strategy["canary"]), status))
    parts.append(_traffic(status, blue_green="blueGreen" in strategy))
    parts.append(_groups(status, now))
    refs = as_list(status.get("analysisRuns"))
    if refs:
        parts.append(_runs(refs, runs))
    conditions = as_list(status.get("conditions"))
    if conditions:
        parts.append(_conditions(conditions, now))
    # Panels fill the width they are given; beyond this they are mostly empty space.
    return Constrain(Group(*parts), width=VIEW_WIDTH)


def _header(body: Obj, now: datetime) -> RenderableType:
    meta, spec, status = (
        as_map(body.get("metadata")),
        as_map(body.get("spec")),
        as_map(body.get("status")),
    )
    grid = facts()
    grid.add_row(
        "Rollout",
        Text.assemble(
            (f"{meta.get('namespace', '')}/{meta.get('name', '')}", "bold cyan"),
            f"  {strategy_of(body)} · {_router(spec)}",
        ),
    )
    grid.add_row("Phase", _phase_text(status))
    if status.get("step"):
        grid.add_row("Step", str(status["step"]))
    grid.add_row("Revision", _revisions(status))
    grid.add_row(
        "Replicas",
        f"desired {_desired(body)} · updated {status.get('updatedReplicas', 0)}"
        f" · ready {status.get('readyReplicas', 0)}"
        f" · available {status.get('availableReplicas', 0)}",
    )
    pauses = _pauses(spec, status, now)
    if pauses:
        grid.add_row("Paused", pauses)
    if status.get("abort"):
        aborted = status.get("abortedAt")
        grid.add_row(
            "Aborted",
            Text(
                "yes" + (f", {age(aborted, now)} ago" if aborted else "") + " (`retry` resumes)",
                style="red",
            ),
        )
    chaos = as_map(status.get("chaos"))
    if chaos:
        grid.add_row("Chaos", _chaos_text(chaos, now))
    promote = as_map(status.get("promote"))
    if promote:
        which = "every remaining step" if promote.get("full") else "the current step"
        grid.add_row("Promote", f"requested: {which} (the operator has not acted yet)")
    generation, observed = meta.get("generation"), status.get("observedGeneration")
    if generation is not None and observed is not None and generation != observed:
        grid.add_row(
            "Observed",
            Text(f"generation {observed} of {generation}: status lags the spec", style="yellow"),
        )
    return grid


def _chaos_text(chaos: Obj, now: datetime) -> Text:
    """The fault of the current (or last) chaos step, or of the background analysis's chaos
    option: injected and until when, or removed why."""
    step = int(chaos.get("stepIndex", 0)) + 1
    where = (
        f"background analysis, from step {step}"
        if chaos.get("source") == "background"
        else f"step {step}"
    )
    what = (
        f"{chaos.get('action', '')} {chaos.get('podsKilled', 0)} of {chaos.get('canaryPods', 0)}"
        f" pods of {chaos.get('serverGroup', '')} ({where})"
    )
    fault = as_map(chaos.get("httpFault"))
    if fault:
        try:
            parsed = HttpFault.model_validate(fault)
        except ValidationError:
            described = "?"
        else:
            tagged = ", ".join(f"{k}: {v}" for k, v in parsed.headers.items())
            described = f"{describe_fault(parsed)} on requests with {tagged}"
        what = f"httpFault {described} to canary {chaos.get('serverGroup', '')} ({where})"
    if chaos.get("phase") == "Injected":
        ends = parse_time(chaos.get("endsAt"))
        until = f", ends in {span((ends - now).total_seconds())}" if ends else ""
        return Text(f"injected: {what}{until}", style="magenta")
    return Text(f"removed ({chaos.get('removedReason') or 'over'}): {what}", style="dim")


def _router(spec: Obj) -> str:
    canary = as_map(as_map(spec.get("strategy")).get("canary"))
    routing = as_map(canary.get("trafficRouting"))
    for key, label in (("gatewayAPI", "Gateway API"), ("nginx", "NGINX"), ("istio", "Istio")):
        if key in routing:
            return f"{label} router"
    if "smi" in routing:
        return "SMI router"
    if "blueGreen" in as_map(spec.get("strategy")):
        return "service switch"
    return "replica ratio (no router)"


def _revisions(status: Obj) -> str:
    current, stable = status.get("currentRevision"), status.get("stableRevision")
    text = f"current {current if current is not None else '-'}"
    if stable is not None and stable != current:
        text += f", stable {stable}"
    return text


def _pauses(spec: Obj, status: Obj, now: datetime) -> str:
    reasons = [
        f"{p.get('reason', '?')} ({age(p.get('startTime'), now)})"
        for p in as_list(status.get("pauseConditions"))
        if isinstance(p, Mapping)
    ]
    if spec.get("paused") and not any(r.startswith("UserPause") for r in reasons):
        reasons.append("spec.paused (`resume` continues)")
    return ", ".join(reasons)


def _step_text(step: Any) -> str:
    try:
        return describe(CanaryStep.model_validate(step))
    except ValidationError:
        return json.dumps(step, separators=(",", ":"))


def _steps(canary: Obj, status: Obj) -> RenderableType:
    steps = as_list(canary.get("steps"))
    table = Table(box=None, pad_edge=False, show_header=False)
    table.add_column(width=2)
    table.add_column(justify="right")
    table.add_column()
    table.add_column(style="dim")
    index = status.get("currentStepIndex")
    current = index if isinstance(index, int) else (len(steps) if status.get("phase") else 0)
    paused = bool(status.get("pauseConditions"))
    aborted = bool(status.get("abort"))
    starting = as_map(canary.get("analysis")).get("startingStep")
    background = (starting or 0) if canary.get("analysis") else None
    for i, step in enumerate(steps):
        if i < current:
            marker = Text("✔", style="green")
        elif i == current and aborted:
            marker = Text("✖", style="red")
        elif i == current:
            marker = Text("⏸" if paused else "▶", style="bold yellow")
        else:
            marker = Text("○", style="dim")
        notes = []
        if background == i:
            notes.append("background analysis from here")
        pause = as_map(as_map(step).get("pause"))
        if "pause" in as_map(step) and "duration" not in pause:
            notes.append("needs promote")
        style = "bold" if i == current and not aborted else ("dim" if i > current else "")
        table.add_row(marker, f"{i + 1}.", Text(_step_text(step), style=style), "; ".join(notes))
    if not steps:
        table.add_row("", "", Text("no steps: a new revision takes all traffic at once"), "")
    return Panel(table, title="Steps", title_align="left", border_style="dim")


def _blue_green(spec: Obj, status: Obj, now: datetime) -> RenderableType:
    bg = as_map(status.get("blueGreen"))
    grid = facts()
    grid.add_row(
        "Active",
        f"service {spec.get('activeService', '-')} → {bg.get('activeServerGroup') or '-'}",
    )
    if spec.get("previewService") or bg.get("previewServerGroup"):
        grid.add_row(
            "Preview",
            f"service {spec.get('previewService') or '-'} → {bg.get('previewServerGroup') or '-'}",
        )
    auto = spec.get("autoPromotionEnabled", True)
    seconds = spec.get("autoPromotionSeconds")
    if not auto:
        promotion = "manual (`promote` switches)"
    elif seconds:
        promotion = f"automatic, {seconds}s after the preview is ready"
    else:
        promotion = "automatic, once the preview is ready"
    grid.add_row("Promotion", promotion)
    for key, label in (
        ("prePromotionAnalysis", "Pre-promotion"),
        ("postPromotionAnalysis", "Post-promotion"),
    ):
        templates = as_list(as_map(spec.get(key)).get("templates"))
        if templates:
            names = ", ".join(str(as_map(t).get("templateName", "?")) for t in templates)
            grid.add_row(label, f"analysis {names}")
    if bg.get("previewReadyAt"):
        grid.add_row("Preview ready", f"{age(bg['previewReadyAt'], now)} ago")
    if bg.get("promotedAt"):
        grid.add_row("Promoted", f"{age(bg['promotedAt'], now)} ago")
    grid.add_row("Scale-down delay", f"{spec.get('scaleDownDelaySeconds', 30)}s")
    return Panel(grid, title="Blue/green", title_align="left", border_style="dim")


BAR_WIDTH = 50
# Distinct glyphs as well as colours, so the split still reads in a log or a monochrome terminal.
SHARES = (("stable", "█", "blue"), ("baseline", "▒", "magenta"), ("canary", "░", "yellow"))


def traffic_bar(weights: Obj, width: int = BAR_WIDTH) -> Text:
    """The split as one bar: stable, then baseline, then canary, widths by weight."""
    values = [
        max(0, int(weights.get(role, 100 if role == "stable" else 0) or 0)) for role, _, _ in SHARES
    ]
    total = sum(values) or 100
    cells = [round(v * width / total) for v in values]
    # Rounding may leave the bar a cell short or long; the largest share absorbs it.
    cells[cells.index(max(cells))] += width - sum(cells)
    bar = Text()
    for (_, glyph, style), count in zip(SHARES, cells, strict=True):
        bar.append(glyph * count, style=style)
    return bar


def _traffic(status: Obj, *, blue_green: bool = False) -> RenderableType:
    weights = as_map(status.get("weights")) or {"stable": 100}
    # Blue/green users think in active and preview; the weights are stored under stable/canary.
    names = {"stable": "active", "canary": "preview"} if blue_green else {}
    legend = Text()
    for role, glyph, style in SHARES:
        value = weights.get(role, 0)
        if role == "stable" or value:
            legend.append(f"{glyph} {names.get(role, role)} {value}%  ", style=style)
    asked = status.get("canaryWeight")
    if isinstance(asked, int) and asked != weights.get("canary", 0):
        legend.append(f"(the step asks for {asked}%)", style="dim")
    return Panel(
        Group(traffic_bar(weights), legend),
        title="Traffic",
        title_align="left",
        border_style="dim",
    )


def _groups(status: Obj, now: datetime) -> RenderableType:
    table = Table(box=None, pad_edge=False, header_style="bold")
    for column in ("GROUP", "ROLE", "REVISION"):
        table.add_column(column)
    for column in ("REPLICAS", "READY", "AVAILABLE"):
        table.add_column(column, justify="right")
    table.add_column("SCALE-DOWN")
    groups = [g for g in as_list(status.get("serverGroups")) if isinstance(g, Mapping)]
    for group in groups:
        role = str(group.get("role", "-"))
        table.add_row(
            str(group.get("name", "?")),
            styled(role, ROLE_STYLE),
            str(group.get("revision", "-")),
            str(group.get("replicas", 0)),
            str(group.get("readyReplicas", 0)),
            str(group.get("availableReplicas", 0)),
            until(group.get("scaleDownAt"), now),
        )
    body: RenderableType = table if groups else Text("no server groups yet", style="dim")
    return Panel(body, title="Server groups", title_align="left", border_style="dim")


def _runs(refs: list[Any], runs: Mapping[str, Obj] | None = None) -> RenderableType:
    table = Table(box=None, pad_edge=False, header_style="bold")
    for column in ("ANALYSIS RUN", "KIND", "STEP", "PHASE"):
        table.add_column(column)
    if runs is not None:
        table.add_column("SCORE")
        table.add_column("FAILING")
    for ref in refs:
        ref = as_map(ref)
        step = ref.get("stepIndex")
        row: list[str | Text] = [
            str(ref.get("name", "?")),
            str(ref.get("kind", "-")),
            str(step + 1) if isinstance(step, int) else "-",
        ]
        run = None if runs is None else runs.get(str(ref.get("name")))
        if run is not None:
            # The run itself is fresher than the phase the rollout last copied from it.
            brief = analysis.brief(run)
            row += [brief.phase, brief.score, brief.failing]
        else:
            row.append(styled(str(ref.get("phase") or "Pending"), RUN_STYLE))
            if runs is not None:
                row += ["-", "-"]
        table.add_row(*row)
    return Panel(table, title="Analysis", title_align="left", border_style="dim")


def _conditions(conditions: list[Any], now: datetime) -> RenderableType:
    table = Table(box=None, pad_edge=False, header_style="bold")
    for column in ("TYPE", "STATUS", "REASON", "AGE", "MESSAGE"):
        table.add_column(column)
    for cond in conditions:
        cond = as_map(cond)
        table.add_row(
            str(cond.get("type", "?")),
            str(cond.get("status", "?")),
            str(cond.get("reason", "")),
            age(cond.get("lastTransitionTime"), now),
            str(cond.get("message", "")),
        )
    return Panel(table, title="Conditions", title_align="left", border_style="dim")
