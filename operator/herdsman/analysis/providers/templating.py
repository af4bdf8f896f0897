"""`{{name}}` placeholders in provider specs (queries, URLs, headers, bodies).

Names are `args.NAME` (the run's arguments), `rollout.name`, `rollout.namespace`,
`rollout.revision`, `rollout.canaryGroup`, `rollout.stableGroup`, `rollout.baselineGroup`
(from the run's context) and, for judged metrics, `group` (the server group being queried).
A placeholder with no value is an error, never an empty string: a query that silently lost a
label matcher would measure the wrong thing and could pass.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from herdsman.api.analysis_run import AnalysisRunContext

_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_.\-]*)\s*\}\}")


class TemplateError(ValueError):
    """A placeholder without a value."""


def placeholders(text: str) -> set[str]:
    return {match.group(1) for match in _PLACEHOLDER.finditer(text)}


def placeholders_in(tree: Any) -> set[str]:
    """Every placeholder in the strings of a JSON-like tree."""
    found: set[str] = set()
    if isinstance(tree, str):
        found |= placeholders(tree)
    elif isinstance(tree, Mapping):
        for value in tree.values():
            found |= placeholders_in(value)
    elif isinstance(tree, list | tuple):
        for item in tree:
            found |= placeholders_in(item)
    return found


def render(text: str, variables: Mapping[str, str]) -> str:
    """`text` with every placeholder replaced; TemplateError naming the first unknown one."""

    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in variables:
            known = ", ".join(sorted(variables)) or "none"
            raise TemplateError(f"unknown placeholder {{{{{name}}}}} (known: {known})")
        return variables[name]

    return _PLACEHOLDER.sub(value, text)


def render_tree(tree: Any, variables: Mapping[str, str]) -> Any:
    """A JSON-like tree with placeholders replaced in every string (keys are left alone)."""
    if isinstance(tree, str):
        return render(tree, variables)
    if isinstance(tree, Mapping):
        return {key: render_tree(value, variables) for key, value in tree.items()}
    if isinstance(tree, list | tuple):
        return [render_tree(item, variables) for item in tree]
    return tree


def context_variables(context: AnalysisRunContext) -> dict[str, str]:
    """The `rollout.*` placeholders a run's context defines (absent groups stay undefined)."""
    variables = {
        "rollout.name": context.rollout,
        "rollout.namespace": context.namespace,
        "rollout.revision": str(context.revision),
    }
    for name, group in (
        ("rollout.canaryGroup", context.canary_group),
        ("rollout.stableGroup", context.stable_group),
        ("rollout.baselineGroup", context.baseline_group),
    ):
        if group:
            variables[name] = group
    return variables
