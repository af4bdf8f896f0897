"""From a measured value to a measurement phase: the success and failure conditions.

What `result` is bound to (Argo Rollouts' conventions, so its conditions keep working):

- Prometheus, instant query returning a scalar: a float (`result < 0.01`).
- Prometheus, instant query returning a vector: a list of floats, one per series, in the order
  Prometheus returned them (`result[0] >= 0.95`, `result.all(x, x < 0.5)`).
- web: the JSON value the `jsonPath` selects (a number, string, bool, list or map); when it
  selects several values, the list of them; without a jsonPath, the whole JSON document (or
  the body text when the answer is not JSON).

How a phase is decided, in this order:

1. A metric with neither condition asserts nothing: as in Argo Rollouts, a measurement that
   was taken is Successful (only an error while measuring fails it). Lint warns about it.
2. No data (an empty vector, only NaN samples, a jsonPath that selects nothing or null) is
   Inconclusive without evaluating anything: absence of evidence is never a success.
3. An expression that does not compile, fails to evaluate, exceeds a cost limit or returns
   something other than a bool is an Error (the measurement could not be judged).
4. failureCondition true: Failed. successCondition true: Successful.
5. As in Argo Rollouts, a lone condition implies its opposite: with only a successCondition,
   a false one is Failed; with only a failureCondition, a false one is Successful. With both
   and neither true, the measurement is Inconclusive.

Two languages (a metric's `conditionLanguage`):

- `CEL`, the native one: herdsman.cel's ANALYSIS environment, CEL plus Argo's helpers isNaN,
  isInf, asInt, asFloat and len.
- `Argo`: Argo Rollouts' expr language with Argo's meaning (herdsman.analysis.argo_expr):
  `all(result, # < 1000)`, `and`/`or`/`not`, `default()`, `result[0]`, ...
- absent (auto): Argo's expr when the condition compiles as expr, else CEL. Where the two
  overlap (`result[0] >= 0.95`, `result.x == 'a'`, `isNaN(result)`) they mostly agree, but not
  at the edges (a missing key is nil in expr and an error in CEL; expr's `/` is always a float
  division): a template ported from Argo keeps Argo's meaning. CEL's own forms (`.all(x, ...)`,
  `size()`, `has()`) do not compile as expr and are CEL. Say `CEL` to get CEL throughout.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from herdsman.analysis.argo_values import ArgoExprError
from herdsman.api.analysis import ConditionLanguage, MeasurementPhase
from herdsman.cel import ANALYSIS, CelError, ConditionError, Environment

if TYPE_CHECKING:
    from herdsman.analysis.argo_expr import ArgoProgram

Language = Literal["CEL", "Argo"]

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
    language: ConditionLanguage | None = None,
    environment: Environment = ANALYSIS,
) -> Outcome:
    """The phase of one measurement; see the module docstring for the rules."""
    if not success_condition and not failure_condition:
        return Outcome("Successful", "")
    if not observation.has_data:
        return Outcome("Inconclusive", "no data")
    try:
        if _holds(environment, failure_condition, observation.result, language):
            return Outcome("Failed", f"failureCondition {failure_condition!r} is true")
        succeeded = _holds(environment, success_condition, observation.result, language)
    except ConditionError as exc:
        return Outcome("Error", str(exc))
    if succeeded:
        return Outcome("Successful", "")
    if success_condition and not failure_condition:
        return Outcome("Failed", f"successCondition {success_condition!r} is false")
    if failure_condition and not success_condition:
        return Outcome("Successful", "")
    return Outcome("Inconclusive", "neither successCondition nor failureCondition is true")


def _compile_argo(expression: str) -> ArgoProgram:
    """Argo's expr, imported on first use: lark and the interpreter hold about 4 MB that an
    operator whose rollouts run no Argo-language condition never needs."""
    from herdsman.analysis.argo_expr import compile_expr

    return compile_expr(expression)


def language_of(
    expression: str,
    declared: ConditionLanguage | None = None,
    *,
    environment: Environment = ANALYSIS,
) -> Language:
    """The language `expression` is evaluated in; CelError or ArgoExprError when it compiles in
    none (for auto: a CelError giving both reasons)."""
    if declared == "Argo":
        _compile_argo(expression)
        return "Argo"
    if declared == "CEL":
        environment.compile(expression)
        return "CEL"
    try:
        _compile_argo(expression)
        return "Argo"
    except ArgoExprError as argo_error:
        try:
            environment.compile(expression)
        except CelError as cel_error:
            first_line = cel_error.reason.splitlines()[0] if cel_error.reason else ""
            raise CelError(
                expression,
                f"compiles neither as CEL ({first_line}) nor as Argo's expr ({argo_error.reason})",
                cel_error.kind,
            ) from None
        return "CEL"


def check_condition(
    expression: str, declared: ConditionLanguage | None = None
) -> tuple[Language | None, str]:
    """For lint and the operator's spec check: (language, "") when it compiles, else
    (None, the reason)."""
    try:
        return language_of(expression, declared), ""
    except ConditionError as exc:
        return None, exc.reason


def _holds(
    environment: Environment,
    expression: str | None,
    result: Any,
    declared: ConditionLanguage | None,
) -> bool:
    if not expression:
        return False
    if language_of(expression, declared, environment=environment) == "Argo":
        return _compile_argo(expression).condition(result)
    value = environment.evaluate(expression, {"result": result})
    if not isinstance(value, bool):
        raise CelError(expression, f"a condition must be true or false, not {value_text(value)}")
    return value
