"""`kubectl herdsman lint`: the CRD's own rules, offline, in the API server's words."""

from __future__ import annotations

import copy
import io
from pathlib import Path
from typing import Any

import pytest
import yaml

from herdsman.cli.lint import lint_object, lint_text, render
from herdsman.cli.main import main
from herdsman.cli.schema import FieldError, rule_errors, structural_errors, with_defaults

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "rollout.yaml"


def manifest(**canary: Any) -> dict[str, Any]:
    strategy: dict[str, Any] = {
        "stableService": "checkout",
        "canaryService": "checkout-canary",
        "steps": [{"setWeight": 20}, {"pause": {}}],
    }
    strategy.update(canary)
    return {
        "apiVersion": "herdsman.dev/v1alpha1",
        "kind": "Rollout",
        "metadata": {"name": "checkout"},
        "spec": {
            "replicas": 10,
            "selector": {"matchLabels": {"app": "checkout"}},
            "template": {
                "metadata": {"labels": {"app": "checkout"}},
                "spec": {"containers": [{"name": "app", "image": "registry.k8s.io/pause:3.9"}]},
            },
            "strategy": {"canary": strategy},
        },
    }


def errors_of(obj: dict[str, Any]) -> list[str]:
    return [str(e) for e in lint_object(obj).errors]


def paths_of(obj: dict[str, Any]) -> list[str]:
    return [e.path for e in lint_object(obj).errors]


def test_the_example_is_valid_and_its_services_are_skipped() -> None:
    report = lint_text(EXAMPLE.read_text(), str(EXAMPLE))
    assert report.ok
    verdicts = render(report)
    assert verdicts[-1].startswith("Rollout/checkout")
    assert verdicts[-1].endswith(": valid")
    assert sum("skipped" in line for line in verdicts) == 2


def test_main_exits_zero_on_the_example_and_one_on_a_bad_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["lint", "-f", str(EXAMPLE)]) == 0
    bad = manifest(steps=[{"setWeight": 20}, {}])
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(bad))
    assert main(["lint", "-f", str(path)]) == 1
    out = capsys.readouterr().out
    assert "  spec.strategy.canary.steps[1]: Invalid value: step: set one of" in out


def test_stdin_and_several_documents(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    good, bad = manifest(), manifest()
    bad["spec"]["replicas"] = -1
    monkeypatch.setattr("sys.stdin", io.StringIO(yaml.safe_dump_all([good, None, bad])))
    assert main(["lint", "-f", "-"]) == 1
    out = capsys.readouterr().out
    assert "(<stdin>, document 1): valid" in out
    assert (
        "spec.replicas: Invalid value: -1: spec.replicas in body should be greater than or "
        "equal to 0" in out
    )


@pytest.mark.parametrize(
    ("mutate", "path", "words"),
    [
        (lambda m: m["spec"].update(replicas="ten"), "spec.replicas", "must be of type integer"),
        (lambda m: m["spec"].update(surprise=1), "spec.surprise", "field not declared"),
        (
            lambda m: m["spec"]["template"]["spec"].pop("containers"),
            "spec.template.spec.containers",
            "Required value",
        ),
        (
            lambda m: m["spec"]["strategy"]["canary"].update(stableService="Checkout_1"),
            "spec.strategy.canary.stableService",
            "should match",
        ),
        (
            lambda m: m["spec"]["strategy"]["canary"].update(steps=[{"setWeight": 101}]),
            "spec.strategy.canary.steps[0].setWeight",
            "less than or equal to 100",
        ),
        (
            lambda m: m["spec"]["strategy"]["canary"].update(steps=[{"setWeight": 1}] * 65),
            "spec.strategy.canary.steps",
            "Too many: 65: must have at most 64 items",
        ),
        (
            lambda m: m["spec"]["template"]["spec"]["containers"][0].update(name="x" * 64),
            "spec.template.spec.containers[0].name",
            "Too long",
        ),
        (
            lambda m: m["spec"]["selector"]["matchLabels"].update(app="v" * 64),
            "spec.selector.matchLabels.app",
            "Too long",
        ),
    ],
)
def test_structural_errors_name_the_field(mutate: Any, path: str, words: str) -> None:
    bad = manifest()
    mutate(bad)
    found = lint_object(bad).errors
    assert [e.path for e in found] == [path]
    assert words in str(found[0])


@pytest.mark.parametrize(
    ("canary", "path", "words"),
    [
        (
            {"steps": [{"setWeight": 5, "pause": {}}]},
            "spec.strategy.canary.steps[0]",
            "at most one",
        ),
        ({"maxSurge": 0, "maxUnavailable": "0%"}, "spec.strategy.canary.maxUnavailable", "zero"),
        ({"maxSurge": "0%", "maxUnavailable": "0%"}, "spec.strategy.canary.maxUnavailable", "zero"),
        (
            {"baseline": True, "steps": [{"setWeight": 60}]},
            "spec.strategy.canary.steps",
            "cannot exceed 50",
        ),
        (
            {"analysis": {"templates": [{"templateName": "t"}], "startingStep": 3}},
            "spec.strategy.canary.analysis.startingStep",
            "beyond the last step",
        ),
    ],
)
def test_cel_rules_are_evaluated_at_their_node_with_field_path(
    canary: dict[str, Any], path: str, words: str
) -> None:
    found = lint_object(manifest(**canary)).errors
    if not path:
        assert found == []
        return
    assert [e.path for e in found] == [path]
    assert found[0].kind == "Invalid value"
    assert words in found[0].detail


def test_defaults_are_applied_before_the_rules() -> None:
    # No steps at all: the rules read self.steps, which only the schema's default provides.
    bare = manifest()
    del bare["spec"]["strategy"]["canary"]["steps"]
    doc = lint_object(bare)
    assert doc.errors == []
    assert doc.body is not None
    canary = doc.body["spec"]["strategy"]["canary"]
    assert canary["steps"] == []
    assert canary["maxSurge"] == "25%"
    assert doc.body["spec"]["revisionHistoryLimit"] == 10


def test_nulls_are_pruned_like_the_api_server_does() -> None:
    with_null = manifest(analysis=None)
    with_null["spec"]["replicas"] = None
    doc = lint_object(with_null)
    assert doc.errors == []
    assert doc.body is not None
    assert doc.body["spec"]["replicas"] == 1


def test_structural_errors_stop_the_rules_and_say_so() -> None:
    bad = manifest(steps=[{}])
    bad["spec"]["replicas"] = -3
    doc = lint_object(bad)
    assert [e.path for e in doc.errors] == ["spec.replicas"]
    assert not doc.rules_checked
    assert "CEL rules not evaluated" in "\n".join(render(lint_text(yaml.safe_dump(bad))))


def test_the_same_service_for_stable_and_canary_is_refused() -> None:
    assert errors_of(manifest(canaryService="checkout")) == [
        'spec.strategy.canary.canaryService: Invalid value: "checkout": must differ from '
        "stableService"
    ]


def test_semantic_checks_beyond_the_schema() -> None:
    routed = manifest(
        trafficRouting={"nginx": {"stableIngress": "web"}, "managedRoutes": [{"name": "beta"}]},
        steps=[{"setHeaderRoute": {"name": "canary-header"}}],
    )
    found = {e.path: str(e) for e in lint_object(routed).errors}
    assert (
        "not in trafficRouting.managedRoutes"
        in found["spec.strategy.canary.steps[0].setHeaderRoute.name"]
    )
    assert (
        "the nginx router cannot route by header"
        in found["spec.strategy.canary.steps[0].setHeaderRoute"]
    )


def test_metadata_name_is_required_and_must_be_a_subdomain() -> None:
    nameless = manifest()
    nameless["metadata"] = {}
    assert paths_of(nameless) == ["metadata.name"]
    upper = manifest()
    upper["metadata"]["name"] = "Checkout"
    assert "RFC 1123 subdomain" in errors_of(upper)[0]


def test_kinds_and_versions() -> None:
    wrong_version = manifest()
    wrong_version["apiVersion"] = "herdsman.dev/v1"
    assert errors_of(wrong_version) == [
        'apiVersion: Unsupported value: "herdsman.dev/v1": supported values: '
        '"herdsman.dev/v1alpha1"'
    ]
    argo = manifest()
    argo["apiVersion"] = "argoproj.io/v1alpha1"
    doc = lint_object(argo)
    assert doc.errors == []
    assert "skipped" in doc.note


def test_not_yaml_and_not_a_mapping() -> None:
    assert "not YAML" in render(lint_text("a: [unclosed"))[1]
    report = lint_text("- just\n- a list\n")
    assert not report.ok
    assert "must be a mapping" in str(report.documents[0].errors[0])


def test_status_is_ignored_on_create() -> None:
    with_status = manifest()
    with_status["status"] = {"phase": "Nonsense", "whatever": True}
    assert lint_object(with_status).errors == []


# --- the validator on small schemas: each keyword -------------------------------------------------


def test_int_or_string_constraints_bind_only_their_type() -> None:
    schema = {
        "x-kubernetes-int-or-string": True,
        "anyOf": [{"type": "integer"}, {"type": "string"}],
        "minimum": 0,
        "pattern": r"^\d+%$",
    }
    assert structural_errors(5, schema, "v") == []
    assert structural_errors("5%", schema, "v") == []
    assert [e.detail for e in structural_errors(-1, schema, "v")] == [
        "v in body should be greater than or equal to 0"
    ]
    assert "should match" in structural_errors("5", schema, "v")[0].detail
    assert "integer or string" in structural_errors(1.5, schema, "v")[0].detail
    # Go's RE2: \d is ASCII only; an Arabic-Indic digit does not match.
    assert structural_errors("\u0665%", schema, "v") != []


def test_enum_and_exclusive_bounds() -> None:
    enum = {"type": "string", "enum": ["a", "b"]}
    assert str(structural_errors("c", enum, "k")[0]) == (
        'k: Unsupported value: "c": supported values: "a", "b"'
    )
    bounded = {"type": "number", "minimum": 0, "exclusiveMinimum": True, "maximum": 1}
    assert "greater than 0" in structural_errors(0, bounded, "n")[0].detail
    assert structural_errors(True, {"type": "integer"}, "b") != []  # a bool is not an integer


def test_rules_honour_reason_message_expression_and_skip_transition_rules() -> None:
    schema = {
        "type": "object",
        "properties": {"a": {"type": "integer"}, "m": {"type": "object"}},
        "x-kubernetes-validations": [
            {"rule": "self.a > 1", "messageExpression": "'a is ' + string(self.a)"},
            {"rule": "self.a > 5", "message": "too small", "reason": "FieldValueForbidden"},
            {"rule": "self.a == oldSelf.a", "message": "immutable"},
            {"rule": "self.a > 0", "message": "never shown", "fieldPath": ".a"},
            {"rule": "self.missing > 0", "message": "needs missing"},
        ],
    }
    found = rule_errors({"a": 1}, schema, "spec")
    assert [str(e) for e in found] == [
        "spec: Invalid value: a is 1",
        "spec: Forbidden: too small",
        'spec: Invalid value: "object": no such key: missing evaluating rule: needs missing',
    ]


def test_field_path_with_map_keys() -> None:
    schema = {
        "type": "object",
        "x-kubernetes-validations": [
            {"rule": "false", "message": "no", "fieldPath": ".labels['app.kubernetes.io/name']"}
        ],
    }
    assert rule_errors({}, schema, "spec")[0].path == "spec.labels[app.kubernetes.io/name]"


def test_defaults_fill_nested_objects_and_list_items() -> None:
    schema = {
        "type": "object",
        "properties": {
            "items": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {"on": {"type": "boolean", "default": False}},
                },
            },
            "inner": {
                "type": "object",
                "default": {},
                "properties": {"n": {"type": "integer", "default": 3}},
            },
        },
    }
    assert with_defaults({"items": [{}, {"on": True}]}, schema) == {
        "items": [{"on": False}, {"on": True}],
        "inner": {"n": 3},
    }


def test_field_error_text_matches_the_api_server_shape() -> None:
    assert str(FieldError("spec.x", "Required value")) == "spec.x: Required value"
    assert (
        str(FieldError("spec.y", "Invalid value", "spec.y in body should be ...", "-1"))
        == "spec.y: Invalid value: -1: spec.y in body should be ..."
    )


def test_the_input_is_not_modified() -> None:
    original = manifest()
    del original["spec"]["strategy"]["canary"]["steps"]
    kept = copy.deepcopy(original)
    lint_object(original)
    assert original == kept


def test_list_type_set_and_map_items_are_unique() -> None:
    as_set = {"type": "array", "x-kubernetes-list-type": "set", "items": {"type": "string"}}
    assert [str(e) for e in structural_errors(["a", "b", "a"], as_set, "tags")] == [
        'tags[2]: Duplicate value: "a"'
    ]
    as_map = {
        "type": "array",
        "x-kubernetes-list-type": "map",
        "x-kubernetes-list-map-keys": ["name"],
        "items": {"type": "object", "properties": {"name": {"type": "string"}, "w": {}}},
    }
    metrics = [{"name": "x", "w": 1}, {"name": "y"}, {"name": "x", "w": 2}]
    assert [str(e) for e in structural_errors(metrics, as_map, "metrics")] == [
        'metrics[2]: Duplicate value: {"name":"x"}'
    ]
    assert structural_errors(["a", "b"], as_set, "tags") == []


@pytest.mark.parametrize("path", sorted((ROOT / "examples").glob("*.yaml")), ids=lambda p: p.name)
def test_every_example_is_valid(path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # The examples are what a new user applies first: each herdsman.dev object in them must pass
    # the same rules the API server and the operator apply.
    assert main(["lint", "-f", str(path)]) == 0
    out = capsys.readouterr().out
    assert ": valid" in out


# --- analysis templates: conditions compiled, metrics that assert nothing -----------------------


def analysis_template(*metrics: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "herdsman.dev/v1alpha1",
        "kind": "AnalysisTemplate",
        "metadata": {"name": "checks"},
        "spec": {"metrics": list(metrics)},
    }


def web_metric(name: str, **fields: Any) -> dict[str, Any]:
    return {"name": name, "provider": {"web": {"url": "http://health/"}}, **fields}


def test_conditions_compile_in_either_language_or_are_refused_naming_the_field() -> None:
    doc = lint_object(
        analysis_template(
            web_metric("argo", successCondition="all(result, # < 1000)"),
            web_metric("cel", successCondition="result.all(x, x < 1000.0)"),
            web_metric("typo", failureCondition="results[0] > 1"),
            web_metric("forced", successCondition="result.all(x, x < 1)", conditionLanguage="Argo"),
        )
    )
    assert [e.path for e in doc.errors] == [
        "spec.metrics[2].failureCondition",
        "spec.metrics[3].successCondition",
    ]
    assert "unknown name results" in doc.errors[0].detail
    assert "as Argo" in doc.errors[1].detail
    assert not doc.warnings


def test_a_metric_without_conditions_is_a_warning_not_an_error(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    body = analysis_template(web_metric("smoke"))
    doc = lint_object(body)
    assert not doc.errors
    assert [w.path for w in doc.warnings] == ["spec.metrics[0].successCondition"]
    lines = render(lint_text(yaml.safe_dump(body)))
    assert lines[0].endswith(": valid")
    assert lines[1].startswith("  warning: spec.metrics[0].successCondition: the metric asserts")
    path = tmp_path / "t.yaml"
    path.write_text(yaml.safe_dump(body))
    assert main(["lint", "-f", str(path)]) == 0
    assert "warning: spec.metrics[0].successCondition" in capsys.readouterr().out
