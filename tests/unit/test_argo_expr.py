"""Argo's condition language (expr), evaluated with Argo's meaning.

The heart of it: every successCondition and failureCondition found in Argo Rollouts' own corpus
(walked where it lies, never copied) gets the verdict Argo's EvaluateResult gives, for a passing
value, a failing one, NaN and an empty list, both with the language detected and with
`conditionLanguage: Argo`. The expected verdicts come from Argo's rules applied to expr's
semantics, written out per condition in `EXPECTED` below; a condition found in the corpus but not
listed there fails the test, so a new corpus condition cannot slip through unjudged.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness.argo_corpus import NOT_YAML, corpus_dir
from herdsman.analysis.argo_expr import ArgoExprError, compile_expr, evaluate_condition
from herdsman.analysis.conditions import Observation, assess, language_of

pytestmark = pytest.mark.unit

NAN = math.nan

# condition -> [(result, verdict Argo gives for it alone as a successCondition)]. "Error" is an
# expr compile or run-time error (Argo: AnalysisPhaseError).
EXPECTED: dict[str, list[tuple[Any, str]]] = {
    "all(result, # < 1000)": [
        ([10.0, 999.0], "Successful"),
        ([10.0, 1000.0], "Failed"),
        ([NAN], "Failed"),  # NaN < 1000 is false in Go
        ([], "Successful"),  # all() of nothing is true
        (NAN, "Error"),  # all() over a number
    ],
    "all(result.service_apdex.values.values, {asFloat(.value) >= 9900})": [
        (
            {"service_apdex": {"values": {"values": [{"value": "9950"}, {"value": "9999"}]}}},
            "Successful",
        ),
        (
            {"service_apdex": {"values": {"values": [{"value": "9950"}, {"value": "100"}]}}},
            "Failed",
        ),
        ({"service_apdex": {"values": {"values": [{"value": "NaN"}]}}}, "Failed"),
        ({"service_apdex": {"values": {"values": []}}}, "Successful"),
        ({"service_apdex": {"values": {"values": [{"value": "n/a"}]}}}, "Error"),
        ([], "Error"),  # cannot fetch service_apdex from an array
    ],
    "len(result[0].Values) >= 5 and all(result[0].Values, {# <= 0.01})": [
        ([{"Values": [0.0, 0.001, 0.002, 0.0, 0.01]}], "Successful"),
        ([{"Values": [0.0, 0.001, 0.002, 0.0, 0.5]}], "Failed"),
        ([{"Values": [0.0, 0.001]}], "Failed"),  # too few values: `and` stops there
        ([{"Values": [NAN] * 5}], "Failed"),
        ([], "Error"),  # index out of range
    ],
    "result <= 0.01": [
        (0.001, "Successful"),
        (0.5, "Failed"),
        (NAN, "Failed"),
        ([], "Error"),  # mismatched types
        (0, "Successful"),  # an integer answer compares as a number
    ],
    'result == "{{args.success-condition}}"': [
        ("{{args.success-condition}}", "Successful"),
        ("other", "Failed"),
        (NAN, "Failed"),  # == across types is false, not an error
        ([], "Failed"),
    ],
    "result == 'It worked!'": [
        ("It worked!", "Successful"),
        ("It failed", "Failed"),
        (NAN, "Failed"),
        ([], "Failed"),
    ],
    "result == 'true'": [
        ("true", "Successful"),
        (True, "Failed"),  # a bool is not the string 'true'
        (NAN, "Failed"),
        ([], "Failed"),
    ],
    "result == true": [
        (True, "Successful"),
        (False, "Failed"),
        ("true", "Failed"),
        (NAN, "Failed"),
        ([], "Failed"),
    ],
    "result >= 0.95": [
        (0.99, "Successful"),
        (0.5, "Failed"),
        (NAN, "Failed"),
        ([], "Error"),
    ],
    "result.Status == -1": [
        ({"Status": -1}, "Successful"),
        ({"Status": 200}, "Failed"),
        ({"Status": NAN}, "Failed"),
        ({}, "Failed"),  # a missing key is nil, and nil == -1 is false
        ([], "Error"),  # cannot fetch Status from an array
    ],
    "result.Status == 999": [
        ({"Status": 999}, "Successful"),
        ({"Status": 200}, "Failed"),
        ({"Status": NAN}, "Failed"),
        ([], "Error"),
    ],
    "result.major == '1'": [
        ({"major": "1", "minor": "30"}, "Successful"),
        ({"major": "2"}, "Failed"),
        ({"major": NAN}, "Failed"),
        ([], "Error"),
    ],
    "result.successRate >= 0.95": [
        ({"successRate": 0.99}, "Successful"),
        ({"successRate": 0.5}, "Failed"),
        ({"successRate": NAN}, "Failed"),
        ({}, "Error"),  # nil >= 0.95: mismatched types
        ([], "Error"),
    ],
    "result[0] <= 0.01": [
        ([0.001], "Successful"),
        ([0.5], "Failed"),
        ([NAN], "Failed"),
        ([], "Error"),  # index out of range
    ],
    "result[0] <= 0.95": [
        ([0.5], "Successful"),
        ([0.99], "Failed"),
        ([NAN], "Failed"),
        ([], "Error"),
    ],
    "result[0] >= 0.95": [
        ([0.99, 0.1], "Successful"),
        ([0.5], "Failed"),
        ([NAN], "Failed"),
        ([], "Error"),
    ],
    "result[0] >= 0.99": [
        ([0.999], "Successful"),
        ([0.5], "Failed"),
        ([NAN], "Failed"),
        ([], "Error"),
    ],
    # Argo's graphite docs: an unknown name, refused by expr's compiler (and by lint).
    "results[0] >= 90.000000": [
        ([95.0], "Error"),
        ([50.0], "Error"),
        ([NAN], "Error"),
        ([], "Error"),
    ],
}


def _conditions(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("successCondition", "failureCondition") and isinstance(value, str):
                yield value
            else:
                yield from _conditions(value)
    elif isinstance(node, list):
        for item in node:
            yield from _conditions(item)


def corpus_conditions(root: Path) -> set[str]:
    found: set[str] = set()
    for path in sorted(root.glob("*.yaml")):
        if path.name in NOT_YAML:
            continue
        for document in yaml.safe_load_all(path.read_text()):
            found.update(_conditions(document))
    return found


@pytest.fixture(scope="module")
def conditions() -> set[str]:
    return corpus_conditions(corpus_dir())


def test_every_corpus_condition_has_expected_verdicts(conditions: set[str]) -> None:
    assert conditions, "no conditions found in the corpus"
    unjudged = sorted(conditions - set(EXPECTED))
    assert not unjudged, f"corpus conditions without expected verdicts: {unjudged}"
    kinds = {tuple(sorted({verdict for _, verdict in cases})) for cases in EXPECTED.values()}
    assert kinds  # every condition is tried against several values


def _argo_verdict(result: Any, success: str | None, failure: str | None, language: Any) -> str:
    return assess(Observation(result), success, failure, language=language).phase


@pytest.mark.parametrize("language", [None, "Argo"])
def test_corpus_conditions_as_success_conditions(
    conditions: set[str], language: str | None
) -> None:
    wrong = []
    for condition in sorted(conditions):
        for result, verdict in EXPECTED[condition]:
            got = _argo_verdict(result, condition, None, language)
            if got != verdict:
                wrong.append(f"{condition!r} with result={result!r}: {got}, Argo: {verdict}")
    assert not wrong, "\n".join(wrong)


def test_corpus_conditions_as_failure_conditions(conditions: set[str]) -> None:
    # The same expressions as a lone failureCondition: true is Failed, false Successful.
    flipped = {"Successful": "Failed", "Failed": "Successful", "Error": "Error"}
    wrong = []
    for condition in sorted(conditions):
        for result, verdict in EXPECTED[condition]:
            got = _argo_verdict(result, None, condition, "Argo")
            if got != flipped[verdict]:
                wrong.append(f"{condition!r} with result={result!r}: {got}")
    assert not wrong, "\n".join(wrong)


def test_corpus_conditions_are_detected_as_argo(conditions: set[str]) -> None:
    assert language_of("all(result, # < 1000)") == "Argo"
    assert language_of("result[0] >= 0.95") == "Argo"  # both compile it: Argo's meaning
    assert language_of("result[0] >= 0.95", "CEL") == "CEL"
    assert language_of("result.all(x, x < 1.0)") == "CEL"
    assert language_of("size(result) > 0 && has(result.x)") == "CEL"
    for condition in conditions:
        if not condition.startswith("results"):
            assert language_of(condition) == "Argo", condition


# --- Argo's rules for two conditions, and no condition ----------------------------------------


@pytest.mark.parametrize(
    ("result", "phase"),
    [(0.99, "Successful"), (0.3, "Failed"), (0.7, "Inconclusive"), ([], "Error")],
)
def test_both_conditions_follow_argo(result: Any, phase: str) -> None:
    outcome = assess(Observation(result), "result >= 0.95", "result < 0.5", language="Argo")
    assert outcome.phase == phase


# --- the language itself ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "result", "value"),
    [
        ("any(result, # > 2) && none(result, # > 5)", [1, 3], True),
        ("one(result, # > 2)", [1, 3, 4], False),
        ("len(filter(result, # > 1)) == 2", [1, 2, 3], True),
        ("map(result, # * 2)[1] == 4", [1, 2], True),
        ("count(result, {# > 0}) == 2", [1, 2, 0], True),
        ("not (result > 1) or isNaN(result)", NAN, True),
        ("!isInf(result) && result != 0", 3.0, True),
        ("isInf(result)", math.inf, True),
        ("default(result, 0) == 0", None, True),
        ("default(result, 0) == 5", 5, True),
        ("isNil(result)", None, True),
        ("asInt(result) == 42", "42", True),
        ("asFloat(result) > 0.5", "0.75", True),
        ("asInt(result) == 3", 3.9, True),
        ("'b' in result", ["a", "b"], True),
        ("'k' in result", {"k": 1}, True),
        ("3 not in result", [1, 2], True),
        ("result.a.b == 'x'", {"a": {"b": "x"}}, True),
        ("result?.a?.b == nil", None, True),
        ('result["my-key"] > 1', {"my-key": 2}, True),
        ("result[-1] == 3", [1, 2, 3], True),
        ("result[1:] == [2, 3]", [1, 2, 3], True),
        ("result / 2 == 1.5", 3, True),  # expr's / is a float division
        ("7 % 3 == 1 and 2 ** 3 == 8", None, True),
        ("result > 1 ? 'big' : 'small'", 5, "big"),
        ("result ?? 'none'", None, "none"),
        ("'abc' contains 'b' && 'abc' startsWith 'a' && 'abc' endsWith 'c'", None, True),
        ("result matches '^v[0-9]+'", "v12", True),
        ("1_000 == 1000 && 0x10 == 16 && 1e3 == 1000", None, True),
        ('"a\\"b" == \'a"b\'', None, True),
        ("{a: 1, 'b': 2}.b == 2", None, True),
        ("1..3 == [1, 2, 3]", None, True),
        ("-result < 0 && +result > 0", 2, True),
        ("abs(result) == 2 && max(1, 5) == 5 && min(result, 1) == -2", -2, True),
        ("upper(result) == 'AB' && lower('AB') == 'ab' && trim(' x ') == 'x'", "ab", True),
        ("string(result) == '3' && int('4') == 4 && float(2) == 2.0", 3, True),
        ("first(result) == 1 && last(result) == 3 && sum(result) == 6", [1, 2, 3], True),
    ],
)
def test_expr_semantics(expression: str, result: Any, value: Any) -> None:
    assert compile_expr(expression).evaluate(result) == value


@pytest.mark.parametrize(
    ("expression", "result", "reason"),
    [
        ("results > 1", 1, "unknown name results"),
        ("size(result) > 1", [1], "unknown func size"),
        ("result +", 1, "syntax error"),
        ("# > 1", 1, "only valid inside"),
        ("len(result, 1) > 0", [1], "takes 1 argument"),
        ("isNaN({# > 1})", 1, "takes no {...} predicate"),
    ],
)
def test_what_expr_does_not_compile(expression: str, result: Any, reason: str) -> None:
    with pytest.raises(ArgoExprError, match=reason) as raised:
        compile_expr(expression)
    assert raised.value.kind == "compile"


@pytest.mark.parametrize(
    ("expression", "result", "reason"),
    [
        ("result[3] > 1", [1], "index out of range"),
        ("result > 'a'", 1.0, "mismatched types"),
        ("result.a > 1", [1], "cannot fetch a"),
        ("result.a.b > 1", {}, "cannot fetch b from <nil>"),
        ("asFloat(result) > 1", "x", "invalid syntax"),
        ("asInt(result) > 1", "1.5", "invalid syntax"),
        ("isNaN(result)", "x", "wants a number"),
        ("result and true", 1, "a bool is needed"),
        ("all(result, # > 1)", 3, "wants an array"),
        ("result + 1", 1, "expected bool"),
        ("7 % 0 == 1", None, "divide by zero"),
    ],
)
def test_run_time_errors(expression: str, result: Any, reason: str) -> None:
    with pytest.raises(ArgoExprError, match=reason):
        evaluate_condition(expression, result)


def test_short_circuit_spares_the_error_argo_would_spare() -> None:
    assert evaluate_condition("len(result) > 0 && result[0] > 1", []) is False
    assert evaluate_condition("len(result) == 0 || result[0] > 1", []) is True


def test_costs_are_bounded() -> None:
    with pytest.raises(ArgoExprError) as raised:
        evaluate_condition("all(result, all(result, # >= 0))", list(range(150)))
    assert raised.value.kind == "limit"
    with pytest.raises(ArgoExprError, match="characters long"):
        compile_expr("result == " + "1 + " * 2000 + "1")
    with pytest.raises(ArgoExprError, match="more than"):
        evaluate_condition("len(result) > 0", list(range(20_000)))
    assert evaluate_condition("all(result, # >= 0)", list(range(9_000)))
