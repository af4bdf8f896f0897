"""From a measured value to a measurement phase: the success and failure conditions.

What `result` is bound to (Argo Rollouts' conventions, so its conditions keep working):

- Prometheus, instant query returning a scalar: a float (`result < 0.01`).
- Prometheus, instant query returning a vector: a list of floats, one per series, in the order
  Prometheus returned them (`result[0] >= 0.95`, `result.all(x, x < 0.5)`).
- web: the JSON value the `jsonPath` selects (a number, string, bool, list or map); when it
  selects several values, the list of them; without a jsonPath, the whole JSON document (or
  the body text when the answer is not JSON).

How a phase is decided, in this order:

1. No data (an empty vector, only NaN samples, a jsonPath that selects nothing or null) is
   Inconclusive without evaluating anything: absence of evidence is never a success.
2. An expression that does not compile, fails to evaluate, exceeds a cost limit or returns
   something other than a bool is an Error (the measurement could not be judged).
3. failureCondition true: Failed. successCondition true: Successful.
4. As in Argo Rollouts, a lone condition implies its opposite: with only a successCondition,
   a false one is Failed; with only a failureCondition, a false one is Successful. With both
   and neither true, the measurement is Inconclusive.

Evaluation uses herdsman.cel's ANALYSIS environment: CEL plus Argo's helpers isNaN, isInf,
asInt, asFloat and len.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from herdsman.api.analysis import MeasurementPhase
from herdsman.cel import ANALYSIS, CelError, Environment

VALUE_TEXT_LIMIT = 1024


@dataclass(frozen=True)
class Observation:
    """What a provider measured, ready for the conditions."""

    result: Any
    """The value `result` is bound to (see the module docstring)."""
    has_data: bool = True
    """False when the source answered but had nothing to say."""

    @property
    def text(self) -> str:
        """The value as the run's status shows it (compact JSON, truncated)."""
        return value_text(self.result) if self.has_data else ""


def value_text(value: Any) -> str:
    try:
        text = json.dumps(value, separators=(",", ":"), default=str, allow_nan=True)
    except (TypeError, ValueError):
        text = repr(value)
    if len(text) > VALUE_TEXT_LIMIT:
        text = text[: VALUE_TEXT_LIMIT - 3] + "..."
    return text


def observe_numbers(values: Sequence[float] | float) -> Observation:
    """An Observation for Prometheus-style numbers: no data when empty or only NaN."""
    if isinstance(values, int | float):
        return Observation(float(values), has_data=not math.isnan(values))
    numbers = [float(v) for v in values]
    has_data = bool(numbers) and not all(math.isnan(v) for v in numbers)
    return Observation(numbers, has_data=has_data)


@dataclass(frozen=True)
class Outcome:
    phase: MeasurementPhase
    message: str = ""


def assess(
    observation: Observation,
    success_condition: str | None,
    failure_condition: str | None,
    *,
    environment: Environment = ANALYSIS,
) -> Outcome:
    """The phase of one measurement; see the module docstring for the rules."""
    if not observation.has_data:
        return Outcome("Inconclusive", "no data")
    if not success_condition and not failure_condition:
        return Outcome("Error", "the metric has neither a successCondition nor a failureCondition")
    try:
        if _holds(environment, failure_condition, observation.result):
            return Outcome("Failed", f"failureCondition {failure_condition!r} is true")
        succeeded = _holds(environment, success_condition, observation.result)
    except CelError as exc:
        return Outcome("Error", str(exc))
    if succeeded:
        return Outcome("Successful", "")
    if success_condition and not failure_condition:
        return Outcome("Failed", f"successCondition {success_condition!r} is false")
    if failure_condition and not success_condition:
        return Outcome("Successful", "")
    return Outcome("Inconclusive", "neither successCondition nor failureCondition is true")


def _holds(environment: Environment, expression: str | None, result: Any) -> bool:
    if not expression:
        return False
    value = environment.evaluate(expression, {"result": result})
    if not isinstance(value, bool):
        raise CelError(expression, f"a condition must be true or false, not {value_text(value)}")
    return value
