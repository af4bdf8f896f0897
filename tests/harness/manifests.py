"""Fuzzed Herdsman manifests: hypothesis strategies walked from the CRD schema, and mutations of
the examples; and the API server's verdict on each, asked in parallel batches.

`from_schema` turns an openAPIV3Schema node into a strategy that respects it (enums, bounds,
patterns, required fields); the CEL rules across fields are left to chance, so many values still
break one. `mutate` then breaks some on purpose with one edit each (a wrong type, a value past a
bound, an unknown field, a deletion), so a refusal names one field. The pod template and
selector of generated Rollouts are fixed and valid (replicas 0-3, so the cluster stays light):
what varies is what Herdsman itself defines; the examples' mutations reach those too.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from herdsman.cluster.kube import Rest

ROOT = Path(__file__).resolve().parents[2]
CRDS = ROOT / "crds"
EXAMPLES = ROOT / "examples"
MAX_DEPTH = 7

Manifest = dict[str, Any]
Schema = dict[str, Any]

POD = {
    "selector": {"matchLabels": {"app": "fz"}},
    "template": {
        "metadata": {"labels": {"app": "fz"}},
        "spec": {"containers": [{"name": "app", "image": "registry.k8s.io/pause:3.9"}]},
    },
}


def crd_schema(kind: str) -> tuple[str, Schema]:
    """(plural, openAPIV3Schema) of a Herdsman kind, from crds/*.yaml."""
    for path in sorted(CRDS.glob("*.yaml")):
        crd = yaml.safe_load(path.read_text())
        if crd["spec"]["names"]["kind"] == kind:
            version = crd["spec"]["versions"][0]
            return crd["spec"]["names"]["plural"], version["schema"]["openAPIV3Schema"]
    raise KeyError(kind)


# --- schema -> strategy ------------------------------------------------------------------------

WRONG = st.sampled_from([None, True, -7, 10**12, "x", "", [], {}, 1.5, "300%", "-1s"])
ASCII = st.characters(min_codepoint=32, max_codepoint=126)
LABELISH = st.from_regex(r"[a-z][a-z0-9-]{0,10}", fullmatch=True)


def _broken(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    # Values follow their own node's rules; breaking one is `mutate`'s job (one edit per
    # manifest, so the refusal names one field rather than dozens).
    return strategy


def _string(node: Schema) -> st.SearchStrategy[Any]:
    if "enum" in node:
        return st.sampled_from(node["enum"])
    if node.get("format") == "date-time":
        return st.datetimes(
            min_value=datetime(2020, 1, 1), max_value=datetime(2030, 1, 1), timezones=st.just(UTC)
        ).map(lambda d: d.strftime("%Y-%m-%dT%H:%M:%SZ"))
    low = int(node.get("minLength", 0))
    high = min(int(node.get("maxLength", 24)), 24)
    if "pattern" in node:
        return st.from_regex(node["pattern"], fullmatch=True, alphabet=ASCII).filter(
            lambda s: low <= len(s) <= int(node.get("maxLength", 10**6))
        )
    return st.text(
        alphabet="abcdefghijklmnopqrstuvwxyz-0123456789{}.", min_size=low, max_size=max(low, high)
    )


def _integer(node: Schema) -> st.SearchStrategy[int]:
    low = int(node.get("minimum", -3))
    high = int(node.get("maximum", low + 120))
    return st.integers(min_value=low, max_value=min(high, low + 1000))


def _int_or_string(node: Schema) -> st.SearchStrategy[Any]:
    percent = st.integers(0, 100).map(lambda n: f"{n}%")
    return st.one_of(
        st.integers(0, 12),
        percent,
        _string({"pattern": node["pattern"]}) if "pattern" in node else percent,
    )


def from_schema(node: Schema, depth: int = 0) -> st.SearchStrategy[Any]:
    """A strategy for values of one schema node (see the module docstring)."""
    if node.get("x-kubernetes-int-or-string"):
        return _broken(_int_or_string(node))
    if "anyOf" in node and "type" not in node:
        return st.one_of([from_schema(alt, depth) for alt in node["anyOf"]])
    kind = node.get("type")
    if kind == "object" or "properties" in node:
        return _broken(_object(node, depth))
    if kind == "array":
        items = from_schema(node.get("items", {}), depth + 1)
        low = int(node.get("minItems", 0))
        high = min(int(node.get("maxItems", 4)), low + 4) if depth < MAX_DEPTH else low
        return _broken(st.lists(items, min_size=low, max_size=high))
    if kind == "string":
        return _broken(_string(node))
    if kind == "integer":
        return _broken(_integer(node))
    if kind == "number":
        return _broken(st.floats(-10, 1000, allow_nan=False))
    if kind == "boolean":
        return _broken(st.booleans())
    # Free-form (x-kubernetes-preserve-unknown-fields without properties).
    return st.dictionaries(LABELISH, st.one_of(st.integers(0, 9), LABELISH), max_size=2)


def _object(node: Schema, depth: int) -> st.SearchStrategy[Any]:
    props: dict[str, Schema] = node.get("properties") or {}
    required = set(node.get("required") or [])
    if not props:
        extra = node.get("additionalProperties")
        if isinstance(extra, dict):
            return st.dictionaries(LABELISH, from_schema(extra, depth + 1), max_size=2)
        return st.dictionaries(LABELISH, LABELISH, max_size=2)
    must = {k: from_schema(v, depth + 1) for k, v in props.items() if k in required}
    may = (
        {k: from_schema(v, depth + 1) for k, v in props.items() if k not in required}
        if depth < MAX_DEPTH
        else {}
    )
    return st.fixed_dictionaries(must, optional=may)


# --- whole manifests ---------------------------------------------------------------------------


def generated_rollout(spec: Any, blue_green: bool, replicas: int) -> Manifest:
    spec = {**spec, **copy.deepcopy(POD), "replicas": replicas}
    strategy = spec.get("strategy")
    if isinstance(strategy, dict) and "canary" in strategy and "blueGreen" in strategy:
        # Exactly one strategy (a CEL rule); both or neither is left to `mutate`.
        strategy.pop("canary" if blue_green else "blueGreen")
    return {
        "apiVersion": "herdsman.dev/v1alpha1",
        "kind": "Rollout",
        "metadata": {"name": "fz"},
        "spec": spec,
    }


def rollouts_from_schema() -> st.SearchStrategy[Manifest]:
    _, schema = crd_schema("Rollout")
    spec = from_schema(schema["properties"]["spec"], depth=1)
    return st.builds(
        generated_rollout,
        spec,
        st.booleans(),
        st.integers(0, 3),
    )


def templates_from_schema() -> st.SearchStrategy[Manifest]:
    _, schema = crd_schema("AnalysisTemplate")
    spec = from_schema(schema["properties"]["spec"], depth=1)
    return spec.map(
        lambda s: {
            "apiVersion": "herdsman.dev/v1alpha1",
            "kind": "AnalysisTemplate",
            "metadata": {"name": "fz"},
            "spec": s,
        }
    )


def example_rollouts() -> list[Manifest]:
    found = []
    for path in sorted(EXAMPLES.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if isinstance(doc, dict) and doc.get("kind") == "Rollout":
                found.append(doc)
    return found


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> Iterable[tuple[Any, ...]]:
    yield prefix
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _paths(v, (*prefix, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _paths(v, (*prefix, i))


def _parent(body: Any, path: tuple[Any, ...]) -> Any:
    for part in path[:-1]:
        body = body[part]
    return body


MUTATIONS = ("delete", "retype", "bump", "negate", "unknown", "duplicate", "empty")


def mutate(example: Manifest, edits: list[tuple[int, str, Any]]) -> Manifest:
    """Apply edits (which node, what to do, with what) to a copy of an example."""
    body = copy.deepcopy(example)
    for pick, op, shared in edits:
        # Hypothesis may hand the same object to two edits: placed twice, it could end up
        # inside itself (a cycle, found as a RecursionError by the first run after a merge).
        value = copy.deepcopy(shared)
        paths = [p for p in _paths(body["spec"]) if p]
        if not paths:
            break
        path = paths[pick % len(paths)]
        parent, key = _parent(body["spec"], path), path[-1]
        current = parent[key]
        if op == "delete":
            del parent[key]
        elif op == "retype":
            parent[key] = value
        elif op == "bump" and isinstance(current, int) and not isinstance(current, bool):
            parent[key] = current + 100
        elif op == "negate" and isinstance(current, int) and not isinstance(current, bool):
            parent[key] = -current - 1
        elif op == "unknown" and isinstance(current, dict):
            current["unknownField"] = value
        elif op == "duplicate" and isinstance(current, list) and current:
            current.append(copy.deepcopy(current[pick % len(current)]))
        elif op == "empty":
            parent[key] = type(current)() if isinstance(current, (dict, list, str)) else 0
        else:
            parent[key] = value
    return body


def mutated_examples() -> st.SearchStrategy[Manifest]:
    edit = st.tuples(st.integers(0, 10**6), st.sampled_from(MUTATIONS), WRONG)
    return st.builds(
        mutate, st.sampled_from(example_rollouts()), st.lists(edit, min_size=1, max_size=3)
    )


def broken(manifests: st.SearchStrategy[Manifest]) -> st.SearchStrategy[Manifest]:
    """One edit (see `mutate`) to a generated manifest."""
    edit = st.tuples(st.integers(0, 10**6), st.sampled_from(MUTATIONS), WRONG)
    return st.builds(mutate, manifests, st.lists(edit, min_size=1, max_size=1))


def manifests() -> st.SearchStrategy[Manifest]:
    """The mix, in percent: schema-generated Rollouts as they are (35) or with one edit (25),
    mutated examples (25), AnalysisTemplates as they are (8) or with one edit (7)."""
    rollouts, templates = rollouts_from_schema(), templates_from_schema()
    mix: list[tuple[int, st.SearchStrategy[Manifest]]] = [
        (35, rollouts),
        (25, broken(rollouts)),
        (25, mutated_examples()),
        (8, templates),
        (7, broken(templates)),
    ]
    table = [strategy for weight, strategy in mix for _ in range(weight)]
    return st.integers(0, len(table) - 1).flatmap(lambda i: table[i])


def generate(count: int, seed: int = 0) -> list[Manifest]:
    """`count` distinct manifests, named fz-<n> (hypothesis drives the generation)."""
    made: list[Manifest] = []
    seen: set[str] = set()

    @settings(
        max_examples=count * 3,
        database=None,
        deadline=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(manifests())
    def collect(manifest: Manifest) -> None:
        key = json.dumps(manifest, sort_keys=True, default=str)
        if len(made) < count and key not in seen:
            seen.add(key)
            made.append(manifest)

    from hypothesis import seed as with_seed

    with_seed(seed)(collect)()
    for n, manifest in enumerate(made):
        if not isinstance(manifest.get("metadata"), dict):
            manifest["metadata"] = {}
        manifest["metadata"]["name"] = f"fz-{n}"
    return made


# --- the API server's verdict ------------------------------------------------------------------


@dataclass(frozen=True)
class Verdict:
    status: int
    fields: frozenset[str]
    text: str

    @property
    def accepted(self) -> bool:
        return self.status < 400


def _fields(payload: dict[str, Any]) -> set[str]:
    fields: set[str] = set()
    for cause in (payload.get("details") or {}).get("causes") or []:
        name = str(cause.get("field", "")).lstrip(".")
        if name and name != "<nil>":
            fields.add(name)
    text = str(payload.get("message", ""))
    if not fields:
        # Strict decoding refuses before validation and names the field only in its message.
        for part in text.split('unknown field "')[1:]:
            fields.add(part.split('"', 1)[0])
    return fields


def submit(rest: Rest, url: str, body: Manifest, *, dry_run: bool) -> Verdict:
    """POST as kubectl does by default (strict field validation), optionally a dry run."""
    api = rest.api
    query = [("fieldValidation", "Strict")] + ([("dryRun", "All")] if dry_run else [])
    method, full, headers, data, post = api.param_serialize(
        "POST",
        url,
        query_params=query,
        header_params={"Accept": "application/json", "Content-Type": "application/json"},
        body=body,
        auth_settings=["BearerToken"],
    )
    response = api.call_api(method, full, headers, data, post, _request_timeout=30)
    payload = json.loads(response.read() or b"{}")
    return Verdict(
        int(response.status), frozenset(_fields(payload)), str(payload.get("message", ""))
    )


def submit_all(
    rest: Rest,
    url_of: Callable[[Manifest], str],
    bodies: list[Manifest],
    *,
    dry_run: bool,
    workers: int = 8,
) -> list[Verdict]:
    """Many submissions at once, in order (the API server answers in parallel)."""
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(lambda b: submit(rest, url_of(b), b, dry_run=dry_run), bodies))


def same_field(lint_fields: set[str], server_fields: Iterable[str]) -> bool:
    """Both name the same field: one path equals, or one is inside the other (the API server
    names `spec.x` where lint reaches `spec.x[0].y`, or the reverse, for the same mistake)."""
    server = set(server_fields)
    if lint_fields & server:
        return True
    for a in lint_fields:
        for b in server:
            if a.startswith((b + ".", b + "[")) or b.startswith((a + ".", a + "[")):
                return True
    return False
