"""Judge API models: camelCase on the wire, JSON-safe, and structural enough for a CRD."""

from __future__ import annotations

import json
from typing import Any

import pytest

from herdsman.analysis.judge import JudgeSpec, ScoringSpec, classify, score
from herdsman.api.crd import structural
from herdsman.api.judge import MetricJudgement, ScoreResult, ScoreThresholds

pytestmark = pytest.mark.unit


def walk(node: Any) -> list[dict[str, Any]]:
    if isinstance(node, dict):
        return [node, *(n for value in node.values() for n in walk(value))]
    if isinstance(node, list):
        return [n for item in node for n in walk(item)]
    return []


def test_results_travel_camel_cased_and_without_nulls() -> None:
    spec = JudgeSpec(outliers="remove")
    judgement = classify("p99", [1.0, 2.0, 3.0, 4.0, 50.0], [2.0, 3.0, 4.0, 5.0, 6.0], spec)
    result = score([(judgement, spec)], ScoringSpec())
    wire = json.loads(
        json.dumps({"j": judgement.to_wire(), "s": result.to_wire()}, allow_nan=False)
    )
    assert {"pValue", "shiftLower", "ratioUpper", "effectSize", "testMethod"} <= set(wire["j"])
    assert {"inputCount", "nanRemoved", "outliersRemoved"} <= set(wire["j"]["baseline"])
    assert {"passThreshold", "marginalThreshold", "criticalFailure"} <= set(wire["s"])
    # Round trip: what the status holds reads back into the same models.
    assert MetricJudgement.model_validate(wire["j"]) == judgement
    assert ScoreResult.model_validate(wire["s"]) == result


def test_no_data_results_leave_absent_numbers_out_of_the_wire() -> None:
    judgement = classify("p99", [], [1.0], JudgeSpec())
    wire = judgement.to_wire()
    assert "pValue" not in wire
    assert "ratio" not in wire
    assert "median" not in wire["baseline"]
    assert score([], ScoringSpec()).to_wire().get("score") is None


def test_thresholds_use_the_pass_keyword_on_the_wire() -> None:
    thresholds = ScoreThresholds.model_validate({"pass": 90, "marginal": 10})
    assert thresholds.pass_ == 90.0
    assert thresholds.to_wire() == {"pass": 90.0, "marginal": 10.0}


@pytest.mark.parametrize("model", [MetricJudgement, ScoreResult, ScoringSpec, JudgeSpec])
def test_schemas_are_structural(model: type[Any]) -> None:
    schema = structural(model.model_json_schema(by_alias=True, mode="validation"))
    nodes = walk(schema)
    assert not any("$ref" in node or "anyOf" in node for node in nodes)
    # Every optional float became a plain number: the API server knows no "null" type.
    assert all(node.get("type") != "null" for node in nodes)
    assert "properties" in schema


def test_scoring_schema_carries_its_api_server_rules() -> None:
    schema = structural(ScoringSpec.model_json_schema(by_alias=True, mode="validation"))
    groups = schema["properties"]["groups"]
    assert groups["x-kubernetes-list-type"] == "map"
    assert groups["x-kubernetes-list-map-keys"] == ["name"]
    rules = schema["properties"]["thresholds"]["x-kubernetes-validations"]
    assert (
        rules[0]["rule"] == "!has(self.marginal) || !has(self.pass) || self.marginal <= self.pass"
    )


def test_result_score_is_bounded_in_the_schema() -> None:
    schema = structural(ScoreResult.model_json_schema(by_alias=True, mode="validation"))
    assert schema["properties"]["score"]["minimum"] == 0.0
    assert schema["properties"]["score"]["maximum"] == 100.0
