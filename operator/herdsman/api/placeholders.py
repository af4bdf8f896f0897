"""Template fields that may hold {{args.*}} placeholders, which Argo resolves when a run is
created: their schema takes the placeholder or the value, and the value is checked once resolved.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Annotated, Any

from pydantic import AfterValidator, WithJsonSchema

PLACEHOLDER = r"\{\{\s*args\.[^}]+\}\}"
_PLACEHOLDER_RE = re.compile(PLACEHOLDER)
_INT_TEXT = re.compile(r"^-?\d+$")


def has_placeholder(value: object) -> bool:
    return isinstance(value, str) and bool(_PLACEHOLDER_RE.search(value))


def _int_check(minimum: int, maximum: int | None = None) -> Callable[[int | str], int | str]:
    """A validator: a number within bounds, its decimal text, or text with {{args.*}}."""

    def check(value: int | str) -> int | str:
        if has_placeholder(value):
            return value
        if isinstance(value, str):
            if not _INT_TEXT.match(value.strip()):
                raise ValueError(f"{value!r} is neither an integer nor a {{{{args.NAME}}}} text")
            number = int(value)
        else:
            number = value
        if number < minimum or (maximum is not None and number > maximum):
            top = f" and at most {maximum}" if maximum is not None else ""
            raise ValueError(f"must be at least {minimum}{top}")
        return value

    return check


def _int_schema(minimum: int, maximum: int | None = None) -> dict[str, Any]:
    bounds: dict[str, int] = {"minimum": minimum}
    if maximum is not None:
        bounds["maximum"] = maximum
    return {
        "x-kubernetes-int-or-string": True,
        "anyOf": [
            {"type": "integer", **bounds},
            {"type": "string", "pattern": rf"^(-?\d+|.*{PLACEHOLDER}.*)$", "maxLength": 256},
        ],
    }


TemplatedDuration = Annotated[
    int | str,
    WithJsonSchema(
        {
            "x-kubernetes-int-or-string": True,
            "anyOf": [
                {"type": "integer", "minimum": 0},
                {
                    "type": "string",
                    "pattern": rf"^(\d+(ms|s|m|h)|.*{PLACEHOLDER}.*)$",
                    "maxLength": 256,
                },
            ],
        }
    ),
]
"""A Duration that may be written as {{args.NAME}} (resolved when the run is created)."""

Count = Annotated[
    int | str, AfterValidator(_int_check(1, 10000)), WithJsonSchema(_int_schema(1, 10000))
]
Limit = Annotated[int | str, AfterValidator(_int_check(-1)), WithJsonSchema(_int_schema(-1))]
"""A limit; -1 is unlimited (Argo's failureLimit: -1)."""
SuccessLimit = Annotated[int | str, AfterValidator(_int_check(0)), WithJsonSchema(_int_schema(0))]


def int_value(value: int | str | None) -> int | None:
    """A templated int once resolved; ValueError while it still holds a placeholder."""
    if value is None or isinstance(value, int):
        return value
    if has_placeholder(value):
        raise ValueError(f"{value!r} is not resolved: the run's arguments fill it in")
    return int(value)
