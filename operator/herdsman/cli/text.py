"""The plugin's small pieces, shared by its views (render.py, analysis.py): readers of plain
dicts that take a field of an unexpected type as absent, times and spans as kubectl prints
them, numbers as a person reads them, the styles of run phases, and the two-column grid of
facts the views start with.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, TypeGuard

from rich.table import Table
from rich.text import Text

Obj = Mapping[str, Any]
MISSING = "-"
"""What a view shows for a value that is not there."""

RUN_STYLE = {
    "Successful": "green",
    "Running": "cyan",
    "Pending": "dim",
    "Inconclusive": "yellow",
    "Failed": "red",
    "Error": "red",
}


def as_map(value: Any) -> Obj:
    """`value` if it is a mapping, else an empty one: a field of an unexpected type reads as absent."""
    return value if isinstance(value, Mapping) else {}


def as_list(value: Any) -> list[Any]:
    """`value` if it is a list, else an empty one."""
    return value if isinstance(value, list) else []


def parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def age(value: Any, now: datetime) -> str:
    """How long ago, the way kubectl prints it: 42s, 5m, 3h, 2d."""
    when = parse_time(value)
    if when is None:
        return "-"
    return span((now - when).total_seconds())


def span(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m"
    if seconds < 2 * 86400:
        return f"{seconds // 3600}h"
    return f"{seconds // 86400}d"


def until(value: Any, now: datetime) -> str:
    """A deadline as `in 25s`, or `due` once passed."""
    when = parse_time(value)
    if when is None:
        return "-"
    left = (when - now).total_seconds()
    return f"in {span(left)}" if left > 0 else "due"


def styled(text: str, styles: Mapping[str, str]) -> Text:
    return Text(text, style=styles.get(text, ""))


def maps(value: Any) -> list[Obj]:
    """The mappings in a list (anything else in it is skipped)."""
    return [item for item in as_list(value) if isinstance(item, Mapping)]


def facts() -> Table:
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    return grid


def is_number(value: Any) -> TypeGuard[int | float]:
    return isinstance(value, int | float) and not isinstance(value, bool)


def num(value: Any, digits: int = 4) -> str:
    """A number as a person reads it: integers whole, floats to `digits` significant digits.

    Absent is `-`; a value of an unexpected type is shown as it is rather than dropped.
    """
    if value is None:
        return MISSING
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        if value.is_integer() and abs(value) < 10**digits:
            return str(int(value))
        return f"{value:.{digits}g}"
    return str(value) if value != "" else MISSING
