"""Builders for analysis objects in tests: metrics, templates and runs with sensible defaults."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from herdsman.analysis.run_build import build_run
from herdsman.api.analysis import AnalysisTemplate, Argument
from herdsman.api.analysis_run import AnalysisRun, AnalysisRunContext

T0 = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)

CONTEXT = AnalysisRunContext(
    rollout="checkout",
    namespace="shop",
    revision=2,
    canary_group="checkout-v002",
    stable_group="checkout-v001",
    baseline_group="checkout-v001-baseline",
)


def prometheus(
    query: str = "vector(0)", addresses: Sequence[str] = ("http://prom:9090",), **more: Any
) -> dict[str, Any]:
    return {"prometheus": {"addresses": list(addresses), "query": query, **more}}


def web(url: str = "http://web/metrics", **more: Any) -> dict[str, Any]:
    return {"web": {"url": url, **more}}


def metric(
    name: str = "m", *, provider: Mapping[str, Any] | None = None, **fields: Any
) -> dict[str, Any]:
    """A metric as a user writes it; conditions default to `result < 1` unless judged."""
    body: dict[str, Any] = {"name": name, "provider": dict(provider or prometheus())}
    if "judge" not in fields and "failureCondition" not in fields:
        body["successCondition"] = "result < 1"
    body.update(fields)
    return body


def template(
    *metrics: Mapping[str, Any],
    name: str = "t",
    args: Sequence[Mapping[str, Any]] = (),
    kind: str = "AnalysisTemplate",
    **spec: Any,
) -> AnalysisTemplate:
    return AnalysisTemplate.model_validate(
        {
            "kind": kind,
            "metadata": {"name": name, "namespace": "shop"},
            "spec": {"metrics": list(metrics), "args": list(args), **spec},
        }
    )


def run_of(
    *metrics: Mapping[str, Any],
    args: Sequence[Mapping[str, Any]] = (),
    template_args: Sequence[Mapping[str, Any]] = (),
    context: AnalysisRunContext = CONTEXT,
    created: datetime = T0,
    **spec: Any,
) -> AnalysisRun:
    """A run built the way the rollout builds one, created at `created`."""
    run = build_run(
        [template(*metrics, args=template_args or [{"name": a["name"]} for a in args], **spec)],
        [Argument.model_validate(a) for a in args],
        context,
        name="checkout-2-step-1",
    )
    run.metadata.creation_timestamp = created
    return run
