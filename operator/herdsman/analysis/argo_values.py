"""Values as Argo's condition language (antonmedv/expr, in Go) treats them: Go's type names in
messages, equality across int and float, conversions as Go's strconv does them, members,
indexes and slices, the binary operators, and the helpers of Argo's environment.

argo_expr.py parses and walks an expression; every value it meets goes through here. A
`Fail` raised here becomes the ArgoExprError that names the expression.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from typing import Any

from herdsman.cel import ConditionError


class ArgoExprError(ConditionError):
    """An Argo (expr) condition that could not be compiled or evaluated."""

    LANGUAGE = "expr"


class Fail(Exception):
    """Raised inside evaluation; becomes an ArgoExprError with the expression attached."""


def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def type_name(value: Any) -> str:
    """Go's type names, for messages that read like Argo's."""
    if value is None:
        return "nil"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float64"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "[]interface {}"
    if isinstance(value, dict):
        return "map[string]interface {}"
    return type(value).__name__


def equal(left: Any, right: Any) -> bool:
    if is_number(left) and is_number(right):
        return bool(left == right)
    if isinstance(left, bool) or isinstance(right, bool):
        return type(left) is type(right) and left == right
    if left is None or right is None:
        return left is right
    if isinstance(left, list) and isinstance(right, list):
        return len(left) == len(right) and all(
            equal(a, b) for a, b in zip(left, right, strict=True)
        )
    if isinstance(left, dict) and isinstance(right, dict):
        return left.keys() == right.keys() and all(equal(left[k], right[k]) for k in left)
    return type(left) is type(right) and bool(left == right)


def as_data(value: Any) -> Any:
    """Input as Argo's providers hand it over: JSON numbers are float64."""
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        return float(value)
    if isinstance(value, list):
        return [as_data(v) for v in value]
    if isinstance(value, dict):
        return {k: as_data(v) for k, v in value.items()}
    return value


_GO_INT = re.compile(r"^[+-]?\d+$")
_GO_FLOAT = re.compile(
    r"^[+-]?((\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?|inf|infinity|nan)$", re.IGNORECASE
)


def as_int(value: Any) -> int:
    if is_number(value):
        if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
            raise Fail(f"asInt() cannot convert {value}")
        return int(value)
    if isinstance(value, str):
        if not _GO_INT.match(value):
            raise Fail(f'strconv.ParseInt: parsing "{value}": invalid syntax')
        number = int(value)
        if not -(2**63) <= number < 2**63:
            raise Fail(f'strconv.ParseInt: parsing "{value}": value out of range')
        return number
    raise Fail(f"asInt() not supported on {type_name(value)} {value!r}")


def as_float(value: Any) -> float:
    if is_number(value):
        return float(value)
    if isinstance(value, str):
        if not _GO_FLOAT.match(value):
            raise Fail(f'strconv.ParseFloat: parsing "{value}": invalid syntax')
        return float(value)
    raise Fail(f"asFloat() not supported on {type_name(value)} {value!r}")


def float_arg(name: str, value: Any) -> float:
    if not is_number(value):
        raise Fail(f"{name}() wants a number, not {type_name(value)}")
    return float(value)


def length(value: Any) -> int:
    if isinstance(value, str | list | dict):
        return len(value)
    raise Fail(f"invalid argument for len (type {type_name(value)})")


def list_arg(name: str, value: Any) -> list[Any]:
    if not isinstance(value, list):
        raise Fail(f"{name}() wants an array, not {type_name(value)}")
    return value


def to_string(value: Any) -> str:
    if value is None:
        return "<nil>"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e21:
        return str(int(value))
    return str(value)


def truth(operation: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise Fail(f"invalid operation: {operation} on {type_name(value)} (a bool is needed)")
    return value


def member(value: Any, name: str, *, safe: bool) -> Any:
    if value is None:
        if safe:
            return None
        raise Fail(f"cannot fetch {name} from <nil>")
    if isinstance(value, dict):
        return value.get(name)
    raise Fail(f"cannot fetch {name} from {type_name(value)}")


def index(value: Any, key: Any) -> Any:
    if isinstance(value, dict):
        return value.get(key)
    if isinstance(value, list | str):
        if not is_number(key) or (isinstance(key, float) and not key.is_integer()):
            raise Fail(f"cannot use {type_name(key)} as an index")
        position = int(key)
        if position < 0:
            position += len(value)
        if not 0 <= position < len(value):
            raise Fail(f"index out of range: {int(key)} (array length is {len(value)})")
        return value[position]
    if value is None:
        raise Fail(f"cannot fetch {to_string(key)} from <nil>")
    raise Fail(f"cannot fetch {to_string(key)} from {type_name(value)}")


def slice_of(value: Any, low: Any, high: Any) -> Any:
    if not isinstance(value, list | str):
        raise Fail(f"cannot slice {type_name(value)}")
    start = 0 if low is None else int(low)
    end = len(value) if high is None else int(high)
    if start < 0:
        start += len(value)
    if end < 0:
        end += len(value)
    if not 0 <= start <= end <= len(value):
        raise Fail(f"slice bounds out of range [{start}:{end}]")
    return value[start:end]


def contains(container: Any, element: Any) -> bool:
    if isinstance(container, list):
        return any(equal(element, e) for e in container)
    if isinstance(container, dict):
        return element in container
    if container is None:
        return False
    raise Fail(f"operator in not defined on {type_name(container)}")


def binop(op: str, left: Any, right: Any) -> Any:
    if op == "==":
        return equal(left, right)
    if op == "!=":
        return not equal(left, right)
    if op in ("<", "<=", ">", ">="):
        if (is_number(left) and is_number(right)) or (
            isinstance(left, str) and isinstance(right, str)
        ):
            return {
                "<": left < right,
                "<=": left <= right,
                ">": left > right,
                ">=": left >= right,
            }[op]
        raise Fail(
            f"invalid operation: {op} (mismatched types {type_name(left)} and {type_name(right)})"
        )
    if op in ("contains", "startsWith", "endsWith", "matches"):
        if not (isinstance(left, str) and isinstance(right, str)):
            raise Fail(
                f"invalid operation: {op} (mismatched types {type_name(left)} and {type_name(right)})"
            )
        if op == "contains":
            return right in left
        if op == "startsWith":
            return left.startswith(right)
        if op == "endsWith":
            return left.endswith(right)
        try:
            return re.search(right, left) is not None
        except re.error as exc:
            raise Fail(f"invalid regular expression {right!r}: {exc}") from None
    if op == "+" and isinstance(left, str) and isinstance(right, str):
        return left + right
    if op == "+" and isinstance(left, list) and isinstance(right, list):
        return left + right
    if not (is_number(left) and is_number(right)):
        raise Fail(
            f"invalid operation: {op} (mismatched types {type_name(left)} and {type_name(right)})"
        )
    if op == "+":
        return left + right
    if op == "-":
        return left - right
    if op == "*":
        return left * right
    if op == "/":
        # expr's `/` is always a float division; Go gives ±Inf or NaN for a zero divisor.
        if right == 0:
            return math.nan if left == 0 or math.isnan(left) else math.copysign(math.inf, left)
        return float(left) / float(right)
    if op == "%":
        if not (isinstance(left, int) and isinstance(right, int)):
            raise Fail(
                f"invalid operation: % (mismatched types {type_name(left)} and {type_name(right)})"
            )
        if right == 0:
            raise Fail("integer divide by zero")
        return int(math.fmod(left, right))
    if op in ("**", "^"):
        return math.pow(float(left), float(right))
    raise Fail(f"unsupported operator {op}")


def helpers(result: Any) -> dict[str, Callable[..., Any]]:
    """The functions of Argo's condition environment, closed over `result` like Argo's."""

    def default(_ignored: Any, fallback: Any) -> Any:
        return fallback if result is None else result

    def is_nil(_ignored: Any) -> bool:
        return result is None

    return {
        "asInt": as_int,
        "asFloat": as_float,
        "isNaN": lambda v: math.isnan(float_arg("isNaN", v)),
        "isInf": lambda v: math.isinf(float_arg("isInf", v)),
        "isNil": is_nil,
        "default": default,
        "len": length,
        "abs": lambda v: abs(v) if is_number(v) else fail(f"abs() of {type_name(v)}"),
        "int": as_int,
        "float": as_float,
        "string": to_string,
        "upper": lambda v: str_arg("upper", v).upper(),
        "lower": lambda v: str_arg("lower", v).lower(),
        "trim": lambda v: str_arg("trim", v).strip(),
        "first": lambda v: list_arg("first", v)[0] if list_arg("first", v) else None,
        "last": lambda v: list_arg("last", v)[-1] if list_arg("last", v) else None,
        "max": lambda *v: extreme(max, "max", v),
        "min": lambda *v: extreme(min, "min", v),
        "sum": lambda v: sum(float_or_int(x) for x in list_arg("sum", v)),
    }


def fail(message: str) -> Any:
    raise Fail(message)


def str_arg(name: str, value: Any) -> str:
    if not isinstance(value, str):
        raise Fail(f"{name}() wants a string, not {type_name(value)}")
    return value


def float_or_int(value: Any) -> float | int:
    if not is_number(value):
        raise Fail(f"cannot add {type_name(value)}")
    return value  # type: ignore[no-any-return]


def extreme(pick: Callable[..., Any], name: str, values: Sequence[Any]) -> Any:
    items = list(values[0]) if len(values) == 1 and isinstance(values[0], list) else list(values)
    if not items or not all(is_number(v) for v in items):
        raise Fail(f"{name}() wants numbers")
    return pick(items)
