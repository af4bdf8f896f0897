"""What an AnalysisTemplate, ClusterAnalysisTemplate or AnalysisRun says that a schema cannot
check: conditions that do not compile, fields whose `{{args.*}}` cannot become a number or a
duration, metrics that assert nothing.

Pure: takes the object as the API server stored it (a dict), returns findings with the field
path they are about. `kubectl herdsman lint` prints them (errors refuse the document, warnings
do not); the operator reports the errors of the templates a rollout references as InvalidSpec.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from herdsman.analysis.conditions import check_condition

Severity = Literal["error", "warning"]


@dataclass(frozen=True)
class Finding:
    severity: Severity
    path: str
    message: str
    value: str | None = None


def metric_findings(metric: Mapping[str, Any], path: str) -> list[Finding]:
    """Findings about one metric (a dict with Argo's camelCase keys) at `path`."""
    found: list[Finding] = []
    language = metric.get("conditionLanguage")
    conditions = 0
    for key in ("successCondition", "failureCondition"):
        expression = metric.get(key)
        if not isinstance(expression, str) or not expression:
            continue
        conditions += 1
        compiled_as, reason = check_condition(expression, language)
        if compiled_as is None:
            message = f"does not compile as {language}: {reason}" if language else reason
            found.append(Finding("error", f"{path}.{key}", message, expression))
    provider = metric.get("provider") or {}
    decided_elsewhere = "judge" in metric or "kayenta" in provider
    if not conditions and not decided_elsewhere:
        found.append(
            Finding(
                "warning",
                f"{path}.successCondition",
                "the metric asserts nothing: with neither successCondition nor failureCondition"
                " every measurement taken is Successful (only an error fails it)",
            )
        )
    return found


def spec_findings(spec: Mapping[str, Any], path: str = "spec") -> list[Finding]:
    """Findings about every metric of a template's or a run's spec."""
    found: list[Finding] = []
    for index, metric in enumerate(spec.get("metrics") or []):
        if isinstance(metric, Mapping):
            found.extend(metric_findings(metric, f"{path}.metrics[{index}]"))
    return found
