"""Building an AnalysisRun: its templates flattened, its arguments resolved, its metrics filled in.

Pure, as runs.py is: the reconcile loop (cluster/analysis.py, cluster/experiment.py) reads the
templates and hands them here with the arguments and context, and creates what comes back.

Following Argo Rollouts: a template may include others (`templates`, flattened depth-first, a
cycle or a metric named twice is an error); `{{args.name}}` placeholders are filled from the
step's arguments over the templates' defaults, and a `valueFrom.fieldRef` from the Rollout's
own body; an argument no template declares, or one left without a value, is an error naming
it. `dryRun` and
`measurementRetention` entries must name metrics the run has (or `*`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from pydantic import ValidationError
from pydantic.alias_generators import to_snake

from herdsman.api.analysis import AnalysisTemplate, Argument, ArgumentValueFrom, Metric
from herdsman.api.analysis_ref import (
    AnalysisRunArgument,
    AnalysisTemplateRef,
    DryRunMetric,
    MeasurementRetention,
)
from herdsman.api.analysis_run import AnalysisRun, AnalysisRunContext, AnalysisRunSpec
from herdsman.api.base import API_VERSION, ObjectMeta, duration_seconds
from herdsman.api.judge import ScoringSpec
from herdsman.api.placeholders import has_placeholder


class RunBuildError(ValueError):
    """The templates and arguments do not make a valid run."""


def build_run(
    templates: Sequence[AnalysisTemplate],
    args: Sequence[AnalysisRunArgument | Argument],
    context: AnalysisRunContext,
    *,
    name: str,
    dry_run: Sequence[DryRunMetric] = (),
    measurement_retention: Sequence[MeasurementRetention] = (),
    labels: Mapping[str, str] | None = None,
    owner_references: Sequence[Mapping[str, Any]] = (),
    rollout: Mapping[str, Any] | None = None,
    pod_hashes: Mapping[str, str | None] | None = None,
    annotations: Mapping[str, str] | None = None,
) -> AnalysisRun:
    """An AnalysisRun measuring every metric of `templates` with `args` for `context`.

    Metrics are merged in template order; a metric name used twice is an error. Template
    arguments are merged by name (conflicting defaults are an error) and `args` override them;
    an argument no template declares, or one left without a value, is an error. A `fieldRef`
    argument is resolved from `rollout` (the Rollout as the API server returned it), a
    `podTemplateHashValue` from `pod_hashes` ("Stable" and "Latest": the pod-template hashes of
    the stable and the new server group); a `secretKeyRef` stays a reference. Every argument
    is resolved here, once: the run holds literal values, as Argo's does.

    `dry_run` and `measurement_retention` (the rollout's or experiment's own rules) come first,
    then the templates'; as in Argo, two rules naming one metric are an error, and so is a rule
    naming a metric no template defines.
    """
    if not templates:
        raise RunBuildError("an analysis run needs at least one template")
    metrics: list[Metric] = []
    origin: dict[str, str] = {}
    declared: dict[str, Argument] = {}
    template_dry_run: list[DryRunMetric] = []
    scoring: ScoringSpec | None = None
    for template in templates:
        label = f"{template.kind} {template.metadata.name or '?'}"
        for metric in template.spec.metrics:
            if metric.name in origin:
                raise RunBuildError(
                    f"metric {metric.name!r} is defined by both {origin[metric.name]} and {label}"
                )
            origin[metric.name] = label
            metrics.append(metric.model_copy(deep=True))
        for arg in template.spec.args:
            known = declared.get(arg.name)
            if known is None or _argument_value(known) is None:
                declared[arg.name] = arg.model_copy(deep=True)
            elif _argument_value(arg) is not None and _argument_value(arg) != _argument_value(
                known
            ):
                raise RunBuildError(
                    f"argument {arg.name!r} has conflicting defaults in the templates"
                )
        template_dry_run += template.spec.dry_run
        if template.spec.scoring is not None:
            if scoring is not None and scoring != template.spec.scoring:
                raise RunBuildError(f"{label} defines scoring differently from an earlier template")
            scoring = template.spec.scoring
    for given in args:
        if given.name not in declared:
            raise RunBuildError(f"argument {given.name!r} is not declared by any template")
        declared[given.name] = _run_argument(given, rollout, pod_hashes or {})
    missing = [arg.name for arg in declared.values() if _argument_value(arg) is None]
    if missing:
        raise RunBuildError(f"arguments without a value: {', '.join(sorted(missing))}")
    dry = _rules("dryRun", [*dry_run, *template_dry_run], origin)
    metrics = [_resolved(metric, declared) for metric in metrics]
    retention = _rules(
        "measurementRetention",
        [*measurement_retention, *(r for t in templates for r in t.spec.measurement_retention)],
        origin,
    )
    meta = ObjectMeta(
        name=name,
        namespace=context.namespace,
        labels=dict(labels or {}),
        annotations=dict(annotations or {}),
    )
    if owner_references:
        meta = ObjectMeta.model_validate(
            {
                **meta.model_dump(by_alias=True),
                "ownerReferences": [dict(o) for o in owner_references],
            }
        )
    spec = AnalysisRunSpec(
        metrics=metrics,
        args=list(declared.values()),
        dry_run=dry,
        measurement_retention=retention,
        scoring=scoring,
        context=context,
    )
    return AnalysisRun(api_version=API_VERSION, metadata=meta, spec=spec)


TEMPLATED_FIELDS = (
    "count",
    "failureLimit",
    "inconclusiveLimit",
    "consecutiveErrorLimit",
    "consecutiveSuccessLimit",
    "interval",
    "initialDelay",
)
"""Metric fields that may hold {{args.*}}; filled in when the run is built, as Argo does."""


def _resolved(metric: Metric, args: Mapping[str, Argument]) -> Metric:
    """`metric` with {{args.*}} in its count, limits and durations filled in and checked."""
    body = metric.model_dump(by_alias=True, exclude_none=True)
    changed = False
    for key in TEMPLATED_FIELDS:
        value = body.get(key)
        if not has_placeholder(value):
            continue

        def fill(match: re.Match[str], key: str = key) -> str:
            name = match.group(1)
            arg = args.get(name)
            if arg is None:
                raise RunBuildError(
                    f"metric {metric.name!r}: {key} uses {{{{args.{name}}}}}, "
                    "which no template declares"
                )
            if arg.value is None:
                raise RunBuildError(
                    f"metric {metric.name!r}: {key} uses {{{{args.{name}}}}}, "
                    "a Secret argument; it needs a plain value"
                )
            return arg.value

        text = _ARG_PLACEHOLDER.sub(fill, str(value)).strip()
        body[key] = (
            int(text) if _INT.match(text) and key not in ("interval", "initialDelay") else text
        )
        changed = True
    if not changed:
        return metric
    try:
        resolved = Metric.model_validate(body)
        for key in ("interval", "initialDelay"):
            try:
                duration_seconds(getattr(resolved, to_snake(key)))
            except ValueError as err:
                raise ValueError(f"{key}: {err}") from None
    except (ValidationError, ValueError) as err:
        detail = "; ".join(_first_lines(err))
        raise RunBuildError(
            f"metric {metric.name!r} after filling in its arguments: {detail}"
        ) from None
    return resolved


_ARG_PLACEHOLDER = re.compile(r"\{\{\s*args\.([A-Za-z0-9_.\-]+)\s*\}\}")
_INT = re.compile(r"^-?\d+$")


def _first_lines(err: Exception) -> list[str]:
    if isinstance(err, ValidationError):
        return [f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in err.errors()]
    return [str(err)]


_Rule = TypeVar("_Rule", DryRunMetric, MeasurementRetention)


def _rules(field: str, entries: Sequence[_Rule], metrics: Mapping[str, str]) -> list[_Rule]:
    """`entries` (dryRun or measurementRetention rules) checked as Argo checks them when it
    builds a run: one rule per metric name, and each naming a metric of the run ('*': all)."""
    seen: set[str] = set()
    for entry in entries:
        if entry.metric_name in seen:
            raise RunBuildError(f"{field}: two rules name metric {entry.metric_name!r}")
        seen.add(entry.metric_name)
    unknown = [e.metric_name for e in entries if e.metric_name not in ("*", *metrics)]
    if unknown:
        raise RunBuildError(f"{field} names unknown metrics: {', '.join(unknown)}")
    return [entry.model_copy() for entry in entries]


def flatten_templates(
    templates: Sequence[AnalysisTemplate],
    lookup: Callable[[AnalysisTemplateRef], AnalysisTemplate | None],
    *,
    max_depth: int = 8,
) -> list[AnalysisTemplate]:
    """Argo's template composition: each template followed by the templates its
    `spec.templates` names, recursively (depth-first, each included once). A missing template,
    a cycle or nesting deeper than `max_depth` is a RunBuildError."""
    found: list[AnalysisTemplate] = []
    seen: set[tuple[str, str]] = set()

    def visit(template: AnalysisTemplate, path: tuple[tuple[str, str], ...]) -> None:
        key = (template.kind, template.metadata.name or "?")
        if key in path:
            chain = " -> ".join(f"{k}/{n}" for k, n in (*path, key))
            raise RunBuildError(f"analysis templates include each other: {chain}")
        if len(path) >= max_depth:
            raise RunBuildError(f"analysis templates nest deeper than {max_depth} levels")
        if key in seen:
            return
        seen.add(key)
        found.append(template)
        for ref in template.spec.templates:
            child = lookup(ref)
            if child is None:
                kind = "ClusterAnalysisTemplate" if ref.cluster_scope else "AnalysisTemplate"
                raise RunBuildError(
                    f"{key[0]} {key[1]} includes {kind} {ref.template_name}, which does not exist"
                )
            visit(child, (*path, key))

    for template in templates:
        visit(template, ())
    return found


def _argument_value(arg: Argument) -> object | None:
    if arg.value_from is not None:
        return arg.value_from.secret_key_ref
    return arg.value


def _run_argument(
    given: AnalysisRunArgument | Argument,
    rollout: Mapping[str, Any] | None,
    pod_hashes: Mapping[str, str | None],
) -> Argument:
    if given.value is not None:
        return Argument(name=given.name, value=given.value)
    source = given.value_from
    if source is None:
        raise RunBuildError(f"argument {given.name!r} has neither value nor valueFrom")
    if source.secret_key_ref is not None:
        return Argument(
            name=given.name, value_from=ArgumentValueFrom(secret_key_ref=source.secret_key_ref)
        )
    which = getattr(source, "pod_template_hash_value", None)
    if which is not None:
        value = pod_hashes.get(which)
        if not value:
            # Argo would pass an empty string; a query for an empty hash matches nothing and
            # reads as "no data", so Herdsman says what is missing instead.
            raise RunBuildError(
                f"argument {given.name!r}: valueFrom.podTemplateHashValue {which}: "
                f"no {which.lower()} server group to read the hash from"
            )
        return Argument(name=given.name, value=value)
    field_ref = getattr(source, "field_ref", None)
    if field_ref is None:
        raise RunBuildError(f"argument {given.name!r}: valueFrom names no source")
    if rollout is None:
        raise RunBuildError(f"argument {given.name!r} uses fieldRef, but no rollout was given")
    try:
        return Argument(name=given.name, value=field_value(rollout, field_ref.field_path))
    except RunBuildError as err:
        raise RunBuildError(f"argument {given.name!r}: valueFrom.{err}") from None


def field_value(obj: Mapping[str, Any], path: str) -> str:
    """The value at a fieldRef path such as `metadata.labels['app']` or `spec.x[0].image`."""
    current: Any = obj
    for part in _path_parts(path):
        if isinstance(part, int):
            if not isinstance(current, list) or not -len(current) <= part < len(current):
                raise RunBuildError(f"fieldRef {path!r}: no item {part}")
            current = current[part]
        else:
            if not isinstance(current, Mapping) or part not in current:
                raise RunBuildError(f"fieldRef {path!r}: no field {part!r}")
            current = current[part]
    if isinstance(current, Mapping | list):
        raise RunBuildError(f"fieldRef {path!r} selects an object, not a value")
    if isinstance(current, bool):
        return "true" if current else "false"
    return str(current)


def _path_parts(path: str) -> list[str | int]:
    parts: list[str | int] = []
    text = path.strip().lstrip(".")
    i = 0
    token = ""
    while i < len(text):
        char = text[i]
        if char == ".":
            if token:
                parts.append(token)
            token = ""
        elif char == "[":
            if token:
                parts.append(token)
            token = ""
            end = text.find("]", i)
            if end < 0:
                raise RunBuildError(f"fieldRef {path!r}: unclosed [")
            inner = text[i + 1 : end].strip()
            if inner[:1] in ("'", '"') and inner[-1:] == inner[:1] and len(inner) >= 2:
                parts.append(inner[1:-1])
            elif inner.lstrip("-").isdigit():
                parts.append(int(inner))
            else:
                raise RunBuildError(f"fieldRef {path!r}: cannot read [{inner}]")
            i = end
        else:
            token += char
        i += 1
    if token:
        parts.append(token)
    if not parts:
        raise RunBuildError("fieldRef: empty path")
    return parts
