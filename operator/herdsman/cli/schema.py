"""Validate an object against a CRD's structural schema offline, the way the API server does.

The order is the API server's: nulls on non-nullable fields are pruned, defaults are applied,
the structural schema is checked (types, required, enums, bounds, unknown fields), and only when
that passes are the `x-kubernetes-validations` CEL rules evaluated, each at its own node with
`self` bound. Messages follow the API server's field errors, field path first:

    spec.strategy.canary.steps[1]: Invalid value: step: set exactly one of setWeight, ...
    spec.replicas: Invalid value: -1: spec.replicas in body should be greater than or equal to 0

Not modelled (no Herdsman schema relies on them): CEL type mapping of `format: date-time` strings
to timestamps, and transition rules (`oldSelf`), which the API server does not run on create
either.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import Any

from herdsman.cel import CelError, Environment

Schema = dict[str, Any]


@dataclass(frozen=True)
class FieldError:
    """One problem, shaped like the API server's `field.Error`."""

    path: str
    kind: str  # "Invalid value", "Required value", "Unsupported value", "Too long", ...
    detail: str = ""
    value: str | None = None  # already rendered; None when the API server shows no value

    def __str__(self) -> str:
        parts = [self.path or "<root>", self.kind]
        if self.value is not None:
            parts.append(self.value)
        if self.detail:
            parts.append(self.detail)
        return ": ".join(parts)


def shown(value: Any) -> str:
    """A value the way Go's field errors print it: strings quoted, numbers bare."""
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if value is None:
        return "null"
    return json.dumps(_type_name(value))


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def child(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def index(path: str, i: int | str) -> str:
    return f"{path}[{i}]"


# --- pruning and defaulting ------------------------------------------------------------------------


def with_defaults(value: Any, schema: Schema) -> Any:
    """A copy of `value` with non-nullable nulls pruned and the schema's defaults applied.

    The API server does both while decoding, before any validation, so rules see defaulted
    fields (the canary rules read `self.maxSurge` and `self.baseline`, which users rarely set).
    """
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        props: dict[str, Schema] = schema.get("properties", {})
        extra = schema.get("additionalProperties")
        for key, item in value.items():
            sub = props.get(key) or (extra if isinstance(extra, dict) else None)
            if item is None and sub is not None and not sub.get("nullable"):
                continue
            out[key] = with_defaults(item, sub) if sub is not None else copy.deepcopy(item)
        for key, sub in props.items():
            if key not in out and "default" in sub:
                out[key] = with_defaults(copy.deepcopy(sub["default"]), sub)
        return out
    if isinstance(value, list):
        items = schema.get("items")
        return [with_defaults(v, items) if items else copy.deepcopy(v) for v in value]
    return value


# --- structural validation --------------------------------------------------------------------------


def structural_errors(value: Any, schema: Schema, path: str = "") -> list[FieldError]:
    return list(_check(value, schema, path))


def _type_ok(value: Any, wanted: str) -> bool:
    if wanted == "object":
        return isinstance(value, dict)
    if wanted == "array":
        return isinstance(value, list)
    if wanted == "string":
        return isinstance(value, str)
    if wanted == "boolean":
        return isinstance(value, bool)
    if wanted == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if wanted == "number":
        return isinstance(value, int | float) and not isinstance(value, bool)
    return True


def _check(value: Any, schema: Schema, path: str) -> Iterator[FieldError]:
    if value is None:
        if not schema.get("nullable"):
            yield FieldError(path, "Invalid value", f"{path} in body must not be null", '"null"')
        return
    if schema.get("x-kubernetes-int-or-string"):
        if not (_type_ok(value, "integer") or isinstance(value, str)):
            yield FieldError(
                path,
                "Invalid value",
                f"{path} in body must be of type integer or string: {shown(_type_name(value))}",
                shown(_type_name(value)),
            )
            return
    elif "type" in schema and not _type_ok(value, schema["type"]):
        yield FieldError(
            path,
            "Invalid value",
            f"{path} in body must be of type {schema['type']}: {shown(_type_name(value))}",
            shown(_type_name(value)),
        )
        return
    if "enum" in schema and value not in schema["enum"]:
        allowed = ", ".join(shown(v) for v in schema["enum"])
        yield FieldError(path, "Unsupported value", f"supported values: {allowed}", shown(value))
        return
    if isinstance(value, int | float) and not isinstance(value, bool):
        yield from _check_number(value, schema, path)
    elif isinstance(value, str):
        yield from _check_string(value, schema, path)
    elif isinstance(value, list):
        yield from _check_array(value, schema, path)
    elif isinstance(value, dict):
        yield from _check_object(value, schema, path)


def _check_number(value: float, schema: Schema, path: str) -> Iterator[FieldError]:
    low, high = schema.get("minimum"), schema.get("maximum")
    if low is not None:
        if schema.get("exclusiveMinimum") and value <= low:
            yield FieldError(
                path, "Invalid value", f"{path} in body should be greater than {low}", shown(value)
            )
        elif value < low:
            yield FieldError(
                path,
                "Invalid value",
                f"{path} in body should be greater than or equal to {low}",
                shown(value),
            )
    if high is not None:
        if schema.get("exclusiveMaximum") and value >= high:
            yield FieldError(
                path, "Invalid value", f"{path} in body should be less than {high}", shown(value)
            )
        elif value > high:
            yield FieldError(
                path,
                "Invalid value",
                f"{path} in body should be less than or equal to {high}",
                shown(value),
            )


def _check_string(value: str, schema: Schema, path: str) -> Iterator[FieldError]:
    if "maxLength" in schema and len(value) > schema["maxLength"]:
        yield FieldError(path, "Too long", f"may not be more than {schema['maxLength']} bytes")
    if "minLength" in schema and len(value) < schema["minLength"]:
        yield FieldError(
            path,
            "Invalid value",
            f"{path} in body should be at least {schema['minLength']} chars long",
            shown(value),
        )
    if "pattern" in schema and not _pattern(schema["pattern"]).search(value):
        yield FieldError(
            path,
            "Invalid value",
            f"{path} in body should match '{schema['pattern']}'",
            shown(value),
        )
    if schema.get("format") == "date-time" and not _is_datetime(value):
        yield FieldError(
            path,
            "Invalid value",
            f"{path} in body must be of type date-time: {shown(value)}",
            shown(value),
        )


@cache
def _pattern(pattern: str) -> re.Pattern[str]:
    # The API server uses Go's RE2, where \d and \w are ASCII only.
    return re.compile(pattern, re.ASCII)


def _is_datetime(value: str) -> bool:
    try:
        datetime.fromisoformat(value)
    except ValueError:
        return False
    return True


def _check_size(
    count: int, schema: Schema, path: str, low: str, high: str, noun: str
) -> Iterator[FieldError]:
    """minItems/maxItems or minProperties/maxProperties, in the API server's words (which say
    "items" for too many properties too)."""
    if high in schema and count > schema[high]:
        yield FieldError(path, "Too many", f"must have at most {schema[high]} items", str(count))
    if low in schema and count < schema[low]:
        yield FieldError(
            path,
            "Invalid value",
            f"{path} in body should have at least {schema[low]} {noun}",
            str(count),
        )


def _check_array(value: list[Any], schema: Schema, path: str) -> Iterator[FieldError]:
    yield from _check_size(len(value), schema, path, "minItems", "maxItems", "items")
    items = schema.get("items")
    if items is not None:
        for i, item in enumerate(value):
            yield from _check(item, items, index(path, i))
    yield from _check_unique(value, schema, path)


def _check_unique(value: list[Any], schema: Schema, path: str) -> Iterator[FieldError]:
    """`x-kubernetes-list-type` set (whole items) and map (the list-map keys) are unique."""
    kind = schema.get("x-kubernetes-list-type")
    if kind not in ("set", "map"):
        return
    keys: list[str] = schema.get("x-kubernetes-list-map-keys", [])
    seen: set[str] = set()
    for i, item in enumerate(value):
        if kind == "map" and isinstance(item, dict):
            identity: Any = {k: item.get(k) for k in keys}
        else:
            identity = item
        token = json.dumps(identity, sort_keys=True, separators=(",", ":"))
        if token in seen:
            yield FieldError(index(path, i), "Duplicate value", value=token)
        seen.add(token)


def _check_object(value: dict[str, Any], schema: Schema, path: str) -> Iterator[FieldError]:
    yield from _check_size(len(value), schema, path, "minProperties", "maxProperties", "properties")
    for key in schema.get("required", []):
        if key not in value:
            yield FieldError(child(path, key), "Required value")
    props: dict[str, Schema] = schema.get("properties", {})
    extra = schema.get("additionalProperties")
    for key, item in value.items():
        if key in props:
            yield from _check(item, props[key], child(path, key))
        elif isinstance(extra, dict):
            # Map values read `matchLabels.app` in the API server's structural errors.
            yield from _check(item, extra, child(path, key))
        elif not schema.get("x-kubernetes-preserve-unknown-fields"):
            # kubectl's default (--validate=strict) makes the API server refuse, not prune.
            yield FieldError(child(path, key), "Unknown field", "field not declared in schema")


# --- CEL rules ---------------------------------------------------------------------------------------

_REASONS = {
    "FieldValueInvalid": "Invalid value",
    "FieldValueForbidden": "Forbidden",
    "FieldValueRequired": "Required value",
    "FieldValueDuplicate": "Duplicate value",
}

_OLD_SELF = re.compile(r"\boldSelf\b")


@cache
def _environment() -> Environment:
    return Environment(["self"])


def rule_errors(value: Any, schema: Schema, path: str = "") -> list[FieldError]:
    """Every `x-kubernetes-validations` rule that fails, evaluated at its node.

    Call only on a value that passed `structural_errors`: like the API server, the rules assume
    the types the schema promises.
    """
    return list(_rules(value, schema, path))


def _rules(value: Any, schema: Schema, path: str) -> Iterator[FieldError]:
    if value is None:
        return
    for rule in schema.get("x-kubernetes-validations", []):
        error = _evaluate(rule, value, path)
        if error is not None:
            yield error
    if isinstance(value, dict):
        props: dict[str, Schema] = schema.get("properties", {})
        extra = schema.get("additionalProperties")
        for key, item in value.items():
            if key in props:
                yield from _rules(item, props[key], child(path, key))
            elif isinstance(extra, dict):
                yield from _rules(item, extra, child(path, key))
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for i, item in enumerate(value):
            yield from _rules(item, schema["items"], index(path, i))


def _evaluate(rule: dict[str, Any], value: Any, path: str) -> FieldError | None:
    expression: str = rule["rule"]
    if _OLD_SELF.search(expression):
        return None  # a transition rule: nothing to compare with on create
    where = _with_field_path(path, rule.get("fieldPath"))
    message = rule.get("message") or f"failed rule: {expression}"
    kind = _REASONS.get(rule.get("reason", ""), "Invalid value")
    env = _environment()
    try:
        passed = env.evaluate(expression, {"self": value})
    except CelError as err:
        return FieldError(
            path, "Invalid value", f"{_reason(err)} evaluating rule: {message}", '"object"'
        )
    if passed is True:
        return None
    if rule.get("messageExpression"):
        try:
            custom = env.evaluate(rule["messageExpression"], {"self": value})
        except CelError:
            custom = None
        if isinstance(custom, str) and custom.strip():
            message = custom
    return FieldError(where, kind, message)


def _with_field_path(path: str, field_path: str | None) -> str:
    """Append a rule's `fieldPath` (`.a.b`, `['key']`, `[0]`) to the node's path."""
    if not field_path:
        return path
    text = re.sub(r"\['([^']*)'\]", r"[\1]", field_path)
    if text.startswith("."):
        return f"{path}{text}" if path else text[1:]
    return f"{path}{text}"


def _reason(err: CelError) -> str:
    """cel-cpp's wording for a missing key, in the API server's (cel-go's) words."""
    missing = re.search(r'Key not found in map\s*:\s*"?([^"]+)"?', err.reason)
    if missing:
        return f"no such key: {missing.group(1)}"
    return err.reason


# --- everything, in the API server's order --------------------------------------------------------


def validate(value: Any, schema: Schema, path: str = "") -> tuple[Any, list[FieldError], bool]:
    """(the defaulted value, its errors, whether CEL rules were evaluated)."""
    defaulted = with_defaults(value, schema)
    errors = structural_errors(defaulted, schema, path)
    if errors:
        return defaulted, errors, False
    return defaulted, rule_errors(defaulted, schema, path), True
