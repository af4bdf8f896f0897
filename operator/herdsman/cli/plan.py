"""`kubectl herdsman plan`: the timeline a manifest would follow, computed without a cluster.

The replica figures come from the engine's own arithmetic (`engine.weights`), so the plan shows
what the operator will ask for, rounding included: in replica-ratio mode a setWeight of 5 on 10
pods is one canary pod, which is 10% of the traffic, and the plan says so.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from herdsman.api.base import duration_seconds
from herdsman.api.chaos import BackgroundChaos, describe_fault, fault_headers
from herdsman.api.rollout import BlueGreenStrategy, CanaryStep, CanaryStrategy, Rollout
from herdsman.engine import weights
from herdsman.engine.canary import describe


@dataclass(frozen=True)
class Row:
    """The state after one step (or the final promotion, `number` None)."""

    number: int | None
    description: str
    weight: int  # the canary weight asked for
    actual: int  # the canary's share of traffic that results (differs by rounding pods)
    stable: int
    canary: int
    baseline: int
    pause: float | None = None  # seconds of a timed pause
    human: bool = False  # waits for `kubectl herdsman promote`
    elapsed: float = 0.0  # the least time from the start until this step is left
    notes: tuple[str, ...] = ()


@dataclass
class Timeline:
    name: str
    strategy: str  # "canary" or "blueGreen"
    replicas: int
    traffic: str  # how the weight reaches users
    limits: weights.Limits | None
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def human_gates(self) -> int:
        return sum(r.human for r in self.rows)

    @property
    def minimum_seconds(self) -> float:
        return self.rows[-1].elapsed if self.rows else 0.0


def timeline(rollout: Rollout) -> Timeline:
    strategy = rollout.spec.strategy
    if strategy.canary is not None:
        return canary_timeline(rollout, strategy.canary)
    assert strategy.blue_green is not None
    return blue_green_timeline(rollout, strategy.blue_green)


# --- canary ---------------------------------------------------------------------------------------


def canary_timeline(rollout: Rollout, strategy: CanaryStrategy) -> Timeline:
    total = rollout.spec.replicas
    routed = strategy.traffic_routing is not None
    lim = weights.limits(total, strategy.max_surge, strategy.max_unavailable)
    plan = Timeline(
        name=rollout.metadata.name,
        strategy="canary",
        replicas=total,
        traffic=_router_name(strategy),
        limits=None if routed else lim,
    )
    background = strategy.analysis
    start = (background.starting_step or 0) if background else None
    chaos_start = None
    if background is not None and background.chaos is not None:
        chaos_start = background.chaos.starting_step
        if chaos_start is None:
            chaos_start = start
    weight, elapsed = 0, 0.0
    override = None  # the setCanaryScale in force (routed mode), cleared by a setWeight
    steps = strategy.steps
    for i, step in enumerate(steps):
        notes: list[str] = []
        if start == i:
            notes.append(_background_note(strategy))
        if background is not None and background.chaos is not None and chaos_start == i:
            notes.append(_background_chaos_note(rollout, background.chaos))
        if step.set_weight is not None:
            weight, override = step.set_weight, None
        if step.set_canary_scale is not None:
            override = step
        pause = _pause_seconds(step)
        human = step.pause is not None and pause is None
        elapsed += pause or 0.0
        if human:
            notes.append("waits for `kubectl herdsman promote`")
        if step.analysis is not None:
            notes.append("waits for the analysis run to pass; a failure aborts")
        if step.experiment is not None:
            pods = sum(1 if t.replicas is None else t.replicas for t in step.experiment.templates)
            required = any(a.required_for_completion for a in step.experiment.analyses)
            lasting = (
                f"for {step.experiment.duration}"
                if step.experiment.duration is not None
                else "until its required analyses complete"
                if required
                else "until promoted past (no duration, no required analysis)"
            )
            notes.append(f"an Experiment of {pods} extra pods runs {lasting}; a failure aborts")
        if step.set_header_route is not None or step.set_mirror_route is not None:
            notes.append("route applied with the traffic write; no wait")
        if step.chaos is not None and step.chaos.http_fault is not None:
            headers = fault_headers(step.chaos.http_fault, rollout.metadata.name)
            tagged = ", ".join(f"{k}: {v}" for k, v in headers.items())
            notes.append(
                f"chaos: Istio {describe_fault(step.chaos.http_fault)} on requests with"
                f" {tagged}, routed to the canary only; the background analysis judges it,"
                " a failure aborts"
            )
        elif step.chaos is not None:
            notes.append(
                f"chaos: {step.chaos.percent}% of the canary's pods kept down; the background"
                " analysis judges it, a failure aborts"
            )
        split, actual = _split(rollout, strategy, weight, override, lim)
        plan.rows.append(
            Row(
                number=i + 1,
                description=describe(step),
                weight=weight,
                actual=actual,
                stable=split.stable,
                canary=split.canary,
                baseline=split.baseline,
                pause=pause,
                human=human,
                elapsed=elapsed,
                notes=tuple(notes),
            )
        )
    final_notes = []
    if start is not None and start >= len(steps):
        plan.notes.append(
            f"background analysis starts at step {start + 1}, past the last step: it never runs"
        )
    if routed:
        final_notes.append(
            f"previous stable scales down after {strategy.scale_down_delay_seconds}s"
        )
    else:
        final_notes.append("previous stable scaled down as the new group grows")
    if steps and weight < 100:
        final_notes.append(f"{weight}% → 100% in one move")
    if background is not None and background.chaos is not None:
        final_notes.append("not before the background chaos is over")
    if not steps:
        final_notes.append("no steps: the new revision takes all traffic at once")
    plan.rows.append(
        Row(
            number=None,
            description="promote to stable",
            weight=100,
            actual=100,
            stable=total,
            canary=0,
            baseline=0,
            elapsed=elapsed,
            notes=tuple(final_notes),
        )
    )
    return plan


_ROUTER_NAMES = {
    "gatewayAPI": "Gateway API",
    "nginx": "NGINX",
    "istio": "Istio",
    "smi": "SMI",
    "alb": "AWS ALB",
    "ambassador": "Ambassador",
    "apisix": "Apache APISIX",
    "appMesh": "AWS App Mesh",
    "traefik": "Traefik",
}


def _router_name(strategy: CanaryStrategy) -> str:
    routing = strategy.traffic_routing
    if routing is None:
        return "replica ratio (no router): the weight is the share of pods"
    names = " + ".join(_ROUTER_NAMES.get(k, k) for k in routing.kinds)
    return f"{names} router: the weight is exact"


def _background_note(strategy: CanaryStrategy) -> str:
    assert strategy.analysis is not None
    names = ", ".join(t.template_name for t in strategy.analysis.templates)
    return f"background analysis starts ({names})"


def _background_chaos_note(rollout: Rollout, chaos: BackgroundChaos) -> str:
    """The background analysis's fault, on the row of the step whose entry injects it."""
    if chaos.http_fault is not None:
        headers = fault_headers(chaos.http_fault, rollout.metadata.name)
        tagged = ", ".join(f"{k}: {v}" for k, v in headers.items())
        what = (
            f"Istio {describe_fault(chaos.http_fault)} on requests with {tagged}, routed to the"
            " canary only"
        )
    else:
        what = f"{chaos.percent}% of the canary's pods kept down"
    return (
        f"background chaos starts: {what} for {chaos.duration} while the steps go on; the"
        " background analysis judges it, a failure aborts"
    )


def _pause_seconds(step: CanaryStep) -> float | None:
    if step.chaos is not None:
        return duration_seconds(step.chaos.duration)  # it lasts its duration, like a pause
    if step.pause is None:
        return None
    return duration_seconds(step.pause.duration)


def _split(
    rollout: Rollout,
    strategy: CanaryStrategy,
    weight: int,
    override: CanaryStep | None,
    lim: weights.Limits,
) -> tuple[weights.Split, int]:
    """(pods per role, the canary's actual share of traffic) at `weight`."""
    total = rollout.spec.replicas
    if strategy.traffic_routing is None:
        split = weights.replica_split(
            total, weight, baseline=strategy.baseline, ceiling=lim.ceiling
        )
        shares = weights.traffic_weights(
            {"stable": split.stable, "canary": split.canary, "baseline": split.baseline}
        )
        return split, shares["canary"]
    # With a router, as the engine does: the latest setCanaryScale (until the next setWeight)
    # sizes the canary, else the weight's share of spec.replicas.
    canary = weights.canary_replicas(total, weight)
    scale = override.set_canary_scale if override is not None else None
    if scale is not None and weight < 100:
        if scale.replicas is not None:
            canary = scale.replicas
        elif scale.weight is not None:
            canary = weights.canary_replicas(total, scale.weight)
    baseline = canary if strategy.baseline and 0 < weight < 100 else 0
    stable = total
    if strategy.dynamic_stable_scale:
        stable = max(total - weights.canary_replicas(total, weight), 0 if weight >= 100 else 1)
    return weights.Split(canary=canary, baseline=baseline, stable=stable), weight


# --- blue/green -----------------------------------------------------------------------------------


def blue_green_timeline(rollout: Rollout, strategy: BlueGreenStrategy) -> Timeline:
    total = rollout.spec.replicas
    preview = (
        strategy.preview_replica_count if strategy.preview_replica_count is not None else total
    )
    plan = Timeline(
        name=rollout.metadata.name,
        strategy="blueGreen",
        replicas=total,
        traffic=f"services: {strategy.active_service} (active)"
        + (f", {strategy.preview_service} (preview)" if strategy.preview_service else ""),
        limits=None,
    )
    rows: list[Row] = []

    def add(text: str, *, promoted: bool = False, **more: Any) -> None:
        rows.append(
            Row(
                number=len(rows) + 1,
                description=text,
                weight=100 if promoted else 0,
                actual=100 if promoted else 0,
                stable=total,
                canary=total if promoted else preview,
                baseline=0,
                **more,
            )
        )

    elapsed = 0.0
    add(f"create the preview group ({preview} pods)")
    if strategy.pre_promotion_analysis is not None:
        names = ", ".join(t.template_name for t in strategy.pre_promotion_analysis.templates)
        add(f"pre-promotion analysis {names}", notes=("a failure aborts; users never saw it",))
    if not strategy.auto_promotion_enabled:
        add("wait for promotion", human=True, notes=("waits for `kubectl herdsman promote`",))
    elif strategy.auto_promotion_seconds:
        elapsed += strategy.auto_promotion_seconds
        add(
            f"auto-promote after {strategy.auto_promotion_seconds}s",
            pause=float(strategy.auto_promotion_seconds),
            elapsed=elapsed,
        )
    add(
        f"switch {strategy.active_service} to the new group",
        promoted=True,
        elapsed=elapsed,
        notes=("the new group is scaled to full size first",),
    )
    if strategy.post_promotion_analysis is not None:
        names = ", ".join(t.template_name for t in strategy.post_promotion_analysis.templates)
        add(
            f"post-promotion analysis {names}",
            promoted=True,
            elapsed=elapsed,
            notes=("a failure switches back to the previous group",),
        )
    elapsed += strategy.scale_down_delay_seconds
    rows.append(
        Row(
            number=None,
            description="the previous group scales down",
            weight=100,
            actual=100,
            stable=0,
            canary=total,
            baseline=0,
            elapsed=elapsed,
            notes=(f"after scaleDownDelaySeconds ({strategy.scale_down_delay_seconds}s)",),
        )
    )
    plan.rows = rows
    plan.notes.append("the blue/green engine is not released yet: this is what the spec asks for")
    return plan


# --- rendering ------------------------------------------------------------------------------------


def seconds_text(value: float) -> str:
    """30s, 5m, 1h30m: durations as a person writes them."""
    whole = round(value)
    if value and value < 1:
        return f"{round(value * 1000)}ms"
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [
        f"{hours}h" if hours else "",
        f"{minutes}m" if minutes else "",
        f"{secs}s" if secs else "",
    ]
    return "".join(parts) or "0s"


def render(plan: Timeline) -> RenderableType:
    blue_green = plan.strategy == "blueGreen"
    head = Text.assemble(
        ("Rollout ", "bold"),
        (plan.name, "bold cyan"),
        f" — {plan.strategy}, {plan.replicas} replicas; {plan.traffic}",
    )
    parts: list[RenderableType] = [head]
    if plan.limits is not None:
        lim = plan.limits
        parts.append(
            Text(
                f"maxSurge → {lim.surge} pods, maxUnavailable → {lim.unavailable} pods: "
                f"at most {lim.ceiling} pods, at least {lim.floor} available while shifting"
            )
        )
    table = Table(box=None, pad_edge=False, header_style="bold")
    table.add_column("#", justify="right")
    table.add_column("Step", no_wrap=True)
    table.add_column("Weight", justify="right")
    # Blue/green: the group users had and the one replacing it, on either side of the switch.
    table.add_column("Old pods" if blue_green else "Stable", justify="right")
    table.add_column("New pods" if blue_green else "Canary", justify="right")
    if not blue_green:
        table.add_column("Baseline", justify="right")
    table.add_column("Pause", justify="right")
    table.add_column("Elapsed ≥", justify="right")
    table.add_column("Notes")
    for row in plan.rows:
        weight = f"{row.weight}%"
        if row.actual != row.weight:
            weight += f" (≈{row.actual}% by pods)"
        pause = (
            "manual" if row.human else (seconds_text(row.pause) if row.pause is not None else "")
        )
        cells = [
            str(row.number) if row.number is not None else "✓",
            row.description,
            weight,
            str(row.stable),
            str(row.canary),
        ]
        if not blue_green:
            cells.append(str(row.baseline) if row.baseline else "-")
        cells += [pause, seconds_text(row.elapsed), "; ".join(row.notes)]
        table.add_row(*cells, style="bold" if row.number is None else None)
    parts.append(table)
    gates = plan.human_gates
    summary = f"Minimum time to full promotion: {seconds_text(plan.minimum_seconds)}"
    if gates:
        summary += f", plus {gates} manual promotion{'s' if gates > 1 else ''}"
    if any("analysis" in r.description for r in plan.rows):
        summary += ", plus the analysis runs' time"
    parts.append(Text(summary + "."))
    parts.extend(Text(note, style="yellow") for note in plan.notes)
    return Group(*parts)
