"""Argo's time expressions for Prometheus' `rangeQuery.start` / `end`.

Argo evaluates them with expr-lang; what its docs and CRD use is a small, closed subset, and
that subset is what is accepted here: `now()`, `duration("1h30m")` (Go's duration syntax),
`date("2026-01-01T00:00:00Z")` (RFC 3339), parentheses, and `+` / `-` between them
(time ± duration, duration ± duration, time - time). Anything else is an error naming the
expression, never a guess.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

_GO_UNITS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "μs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}
_GO_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")
_TOKEN = re.compile(
    r"\s*(?:(?P<call>now|duration|date)\s*\(\s*(?:(?P<arg>\"[^\"]*\"|'[^']*'))?\s*\)"
    r"|(?P<op>[+\-()]))"
)


class TimeExpressionError(ValueError):
    """The expression is not one Argo's rangeQuery form allows."""


def go_duration(text: str) -> timedelta:
    """A Go duration string (`1h30m`, `300ms`, `-5m`) as a timedelta."""
    value = text.strip()
    sign = -1.0 if value.startswith("-") else 1.0
    value = value.lstrip("+-")
    if value == "0":
        return timedelta(0)
    position, seconds = 0, 0.0
    while position < len(value):
        match = _GO_PART.match(value, position)
        if match is None:
            raise TimeExpressionError(f"invalid duration {text!r}: want e.g. 30s, 5m, 1h30m")
        seconds += float(match.group(1)) * _GO_UNITS[match.group(2)]
        position = match.end()
    if not value:
        raise TimeExpressionError(f"invalid duration {text!r}")
    return timedelta(seconds=sign * seconds)


Value = datetime | timedelta


def evaluate(
    expression: str, *, now: Callable[[], datetime] = lambda: datetime.now(UTC)
) -> datetime:
    """The point in time `expression` denotes (see the module docstring)."""
    tokens = _tokens(expression)
    position = 0

    def peek() -> tuple[str, str] | None:
        return tokens[position] if position < len(tokens) else None

    def term() -> Value:
        nonlocal position
        token = peek()
        if token is None:
            raise TimeExpressionError(f"{expression!r}: ends where a value was expected")
        position += 1
        kind, text = token
        if kind == "(":
            value = sum_()
            if peek() != (")", ")"):
                raise TimeExpressionError(f"{expression!r}: a parenthesis is not closed")
            position += 1
            return value
        if kind == "now":
            if text:
                raise TimeExpressionError(f"{expression!r}: now() takes no argument")
            return now()
        if kind == "duration":
            return go_duration(_unquote(expression, text))
        if kind == "date":
            try:
                moment = datetime.fromisoformat(_unquote(expression, text).replace("Z", "+00:00"))
            except ValueError as exc:
                raise TimeExpressionError(f"{expression!r}: {exc}") from exc
            return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
        raise TimeExpressionError(f"{expression!r}: unexpected {text!r}")

    def sum_() -> Value:
        nonlocal position
        value = term()
        while (token := peek()) is not None and token[0] in "+-":
            position += 1
            value = _combine(expression, value, token[0], term())
        return value

    result = sum_()
    if position != len(tokens):
        raise TimeExpressionError(f"{expression!r}: unexpected {tokens[position][1]!r}")
    if not isinstance(result, datetime):
        raise TimeExpressionError(f"{expression!r} is a duration, not a point in time")
    return result


def _combine(expression: str, left: Value, op: str, right: Value) -> Value:
    if isinstance(left, datetime) and isinstance(right, timedelta):
        return left + right if op == "+" else left - right
    if isinstance(left, timedelta) and isinstance(right, timedelta):
        return left + right if op == "+" else left - right
    if isinstance(left, timedelta) and isinstance(right, datetime) and op == "+":
        return right + left
    if isinstance(left, datetime) and isinstance(right, datetime) and op == "-":
        return left - right
    raise TimeExpressionError(f"{expression!r}: cannot {op} these two")


def _unquote(expression: str, text: str) -> str:
    if len(text) < 2:
        raise TimeExpressionError(f"{expression!r}: the function needs a quoted argument")
    return text[1:-1]


def _tokens(expression: str) -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []
    position = 0
    text = expression.strip()
    while position < len(text):
        match = _TOKEN.match(text, position)
        if match is None or match.end() == position:
            raise TimeExpressionError(f"{expression!r}: cannot read {text[position:]!r}")
        if match.group("call"):
            found.append((match.group("call"), match.group("arg") or ""))
        else:
            found.append((match.group("op"), match.group("op")))
        position = match.end()
        while position < len(text) and text[position].isspace():
            position += 1
    return found
