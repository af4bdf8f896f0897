"""Conditions (CEL here; Argo's expr in test_argo_expr.py): Argo's forms keep working, no data
never passes, errors are Errors, costs are bounded."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from herdsman import cel
from herdsman.analysis.conditions import Observation, Outcome, assess, observe_numbers
from herdsman.cel import ANALYSIS, ITERATION_BUDGET, CelError, CelLimits, Environment

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("result", "success", "failure", "phase"),
    [
        (0.001, "result < 0.01", None, "Successful"),
        (0.5, "result < 0.01", None, "Failed"),  # a lone successCondition implies its negation
        (0.5, None, "result > 0.1", "Failed"),
        (0.05, None, "result > 0.1", "Successful"),  # a lone failureCondition implies its negation
        (0.05, "result < 0.01", "result > 0.1", "Inconclusive"),
        (0.001, "result < 0.01", "result > 0.1", "Successful"),
        (0.5, "result < 0.01", "result > 0.1", "Failed"),
        (0.5, "result > 0.1", "result > 0.1", "Failed"),  # failure wins over success
        ([0.97], "result[0] >= 0.95", None, "Successful"),
        ([1.0, 2.0], "result.all(x, x < 3.0)", None, "Successful"),
        ([1.0, 2.0], "len(result) == 2 && size(result) == 2", None, "Successful"),
        (float("nan"), None, "isNaN(result)", "Inconclusive"),  # NaN alone is no data
        ([float("nan"), 1.0], "!isNaN(result[1])", None, "Successful"),
        ("0.25", "asFloat(result) < 0.5", None, "Successful"),
        (
            {"status": "ok", "checks": [1, 2]},
            "result.status == 'ok' && size(result.checks) == 2",
            None,
            "Successful",
        ),
        (True, "result", None, "Successful"),
        (True, "result == true", "result == false", "Successful"),
        (3, "result < 3.5", None, "Successful"),  # ints and doubles compare
    ],
)
def test_argo_style_conditions(
    result: object, success: str | None, failure: str | None, phase: str
) -> None:
    observation = observe_numbers(result) if isinstance(result, float) else Observation(result)
    assert assess(observation, success, failure).phase == phase


@pytest.mark.parametrize(
    "observation",
    [
        observe_numbers([]),
        observe_numbers([float("nan"), float("nan")]),
        observe_numbers(float("nan")),
        Observation(None, has_data=False),
    ],
)
def test_no_data_is_inconclusive_even_for_conditions_that_would_pass(
    observation: Observation,
) -> None:
    # `!(result > 0.1)` is true of NaN and of an empty list's size; it must not get the chance.
    outcome = assess(observation, "true", "false")
    assert outcome == Outcome("Inconclusive", "no data")


@pytest.mark.parametrize(
    ("result", "success", "reason"),
    [
        ([], "result[0] < 1.0", "no data"),  # no data is decided before evaluation
        ([0.1], "result[3] < 1.0", "Index"),
        ({"a": 1}, "result.b == 1", "Key not found"),
        (1.0, "result < 'a'", "No matching overloads"),
        (1.0, "result +", "Syntax error"),
        (1.0, "result + 1.0", "must be true or false"),
        ("x", "asFloat(result) > 1.0", "could not convert"),
        (1.0, "undefinedFunction(result)", "undeclared reference"),
    ],
)
def test_an_expression_that_cannot_be_evaluated_is_an_error(
    result: object, success: str, reason: str
) -> None:
    # CEL's own reasons; tests/unit/test_argo_expr.py has Argo's.
    outcome = assess(Observation(result, has_data=result != []), success, None, language="CEL")
    if reason == "no data":
        assert outcome.phase == "Inconclusive"
    else:
        assert outcome.phase == "Error"
        assert reason in outcome.message
        assert success in outcome.message  # the message names the expression


def test_a_metric_without_conditions_is_successful_as_in_argo() -> None:
    # Argo: "always return success unless there is an error" (lint warns it asserts nothing).
    assert assess(Observation(1.0), None, None).phase == "Successful"
    assert assess(Observation(None, has_data=False), None, None).phase == "Successful"


# --- the CEL wrapper and its limits ---------------------------------------------------------------


def test_the_iteration_budget_stops_runaway_comprehensions() -> None:
    values = list(range(150))
    with pytest.raises(CelError) as raised:
        ANALYSIS.evaluate("result.all(x, result.all(y, y >= 0))", {"result": values})
    assert raised.value.kind == "limit"
    assert str(ITERATION_BUDGET) in raised.value.reason
    # The same loop just inside the budget is fine.
    assert ANALYSIS.evaluate("result.all(x, x >= 0)", {"result": list(range(ITERATION_BUDGET - 1))})


def test_our_own_limits_refuse_long_expressions_and_large_inputs() -> None:
    small = Environment(
        ["result"],
        limits=CelLimits(
            max_expression_length=20, max_input_nodes=10, max_input_depth=3, max_string_length=5
        ),
    )
    with pytest.raises(CelError, match="characters long") as too_long:
        small.evaluate("result == " + "1 + " * 10 + "1", {"result": 1})
    assert too_long.value.kind == "limit"
    with pytest.raises(CelError, match="more than 10 values"):
        small.evaluate("size(result) > 0", {"result": list(range(20))})
    with pytest.raises(CelError, match="deeper than 3"):
        small.evaluate("true", {"result": [[[[[1]]]]]})
    with pytest.raises(CelError, match="longer than 5"):
        small.evaluate("true", {"result": "abcdefgh"})
    with pytest.raises(CelError, match="not a CEL value"):
        small.evaluate("true", {"result": object()})


def test_programs_are_compiled_once_per_environment() -> None:
    env = Environment(["result"])
    first = env.compile("result > 1")
    second = env.compile("result > 1")
    assert first._compiled is second._compiled
    assert env.evaluate("result > 1", {"result": 2}) is True


def test_crd_style_rules_evaluate_with_self() -> None:
    rule = "[has(self.value), has(self.valueFrom)].filter(x, x).size() <= 1"
    assert cel.evaluate(rule, {"self": {"name": "a", "value": "x"}}) is True
    assert cel.evaluate(rule, {"self": {"name": "a", "value": "x", "valueFrom": {}}}) is False
    with pytest.raises(CelError, match="no value for oldSelf"):
        Environment(["self", "oldSelf"]).evaluate("self == oldSelf", {"self": 1})


@settings(max_examples=80, deadline=None)
@given(
    st.recursive(
        st.none()
        | st.booleans()
        | st.integers(-(2**62), 2**62)
        | st.floats(allow_nan=True)
        | st.text(max_size=20),
        lambda inner: (
            st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=5), inner, max_size=5)
        ),
        max_leaves=30,
    )
)
def test_any_json_like_result_yields_a_phase_and_never_raises(result: object) -> None:
    outcome = assess(Observation(result), "result == result", "false")
    assert outcome.phase in ("Successful", "Failed", "Inconclusive", "Error")
    has_nan = isinstance(result, float) and math.isnan(result)
    if not has_nan and not isinstance(result, list | dict):
        assert outcome.phase == "Successful"
