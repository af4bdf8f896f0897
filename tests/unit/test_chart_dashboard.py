"""The Grafana dashboard queries only metrics the operator exports, with labels they carry.

Every panel's PromQL is taken apart: what is neither a function, a keyword, a label matcher nor
a grouping clause is a metric name, and must be in `herdsman.metrics.metric_names()`; the labels
it selects or groups by must be labels of those metrics. The e2e test test_helm_dashboard.py runs
each query against a real Prometheus scraping the operator's registry.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest
from prometheus_client.metrics import MetricWrapperBase

from harness.cluster import CHART
from herdsman import metrics, rollout_counters, rollout_gauges

pytestmark = pytest.mark.unit

DASHBOARD = CHART / "dashboards" / "herdsman.json"
FUNCTIONS = {
    "abs", "avg", "avg_over_time", "ceil", "changes", "clamp_min", "clamp_max", "count",
    "count_over_time", "delta", "deriv", "floor", "histogram_quantile", "idelta", "increase",
    "irate", "label_replace", "label_values", "last_over_time", "max", "max_over_time", "min",
    "min_over_time", "rate", "resets", "round", "scalar", "sort", "sort_desc", "sum",
    "sum_over_time", "time", "timestamp", "topk", "bottomk", "vector", "absent", "quantile",
}  # fmt: skip
KEYWORDS = {"and", "or", "unless", "bool", "offset"}
GROUPING = r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)"
BUILTIN_VARIABLES = {"__range", "__rate_interval", "__interval"}
# What the issue asks the dashboard to show, and the metric that shows it.
TOPICS = {
    "rollouts in progress": "herdsman_rollout_phase",
    "success and abort rate": "herdsman_releases_total",
    "time per step": "herdsman_step_duration_seconds_bucket",
    "analysis scores": "herdsman_analysis_score",
    "release cost": "herdsman_release_cost_replica_seconds",
    # Issue 15: a fault injected into a canary is on the dashboard while it is in force.
    "canary pods a chaos fault keeps down": "herdsman_chaos_active",
    "an httpFault route to the canary in force": "herdsman_chaos_http_fault_active",
}


def dashboard() -> dict[str, Any]:
    result: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return result


def panels() -> Iterator[dict[str, Any]]:
    for panel in dashboard()["panels"]:
        yield panel
        yield from panel.get("panels", [])  # a collapsed row keeps its panels inside


def queries() -> Iterator[tuple[str, str]]:
    for panel in panels():
        for target in panel.get("targets", []):
            yield panel["title"], target["expr"]


def labels_of() -> dict[str, set[str]]:
    """Sample name -> label names, from the collectors in herdsman.metrics."""
    found: dict[str, set[str]] = {}
    for value in vars(metrics).values():
        if not isinstance(value, MetricWrapperBase):
            continue
        base = value._name
        labels = set(value._labelnames)
        kind = value._type
        if kind == "counter":
            found[f"{base}_total"] = labels
        elif kind == "histogram":
            for suffix in ("sum", "count"):
                found[f"{base}_{suffix}"] = labels
            found[f"{base}_bucket"] = labels | {"le"}
        else:
            found[base] = labels
    for name, (_help, names) in rollout_gauges.FAMILIES.items():
        found[name] = set(names)
    for name, (_help, names) in rollout_counters.COUNTERS.items():
        found[f"{name}_total"] = {*rollout_counters.ROLLOUT, *names}
    step = {*rollout_counters.ROLLOUT, "kind"}
    for suffix in ("sum", "count"):
        found[f"{rollout_counters.STEP_DURATION}_{suffix}"] = step
    found[f"{rollout_counters.STEP_DURATION}_bucket"] = step | {"le"}
    return found


def parse(expr: str) -> tuple[set[str], set[str], set[str]]:
    """(metric names, functions, label names) used by a PromQL expression."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # string literals
    text = re.sub(r"\$\{?\w+\}?", "1m", text)  # dashboard variables
    label_names: set[str] = set()
    for matchers in re.findall(r"\{([^}]*)\}", text):
        label_names |= set(re.findall(r"(\w+)\s*(?:=~|!~|!=|=)", matchers))
    text = re.sub(r"\{[^}]*\}", " ", text)
    for grouped in re.findall(GROUPING, text):
        label_names |= {n.strip() for n in grouped.split(",") if n.strip()}
    text = re.sub(GROUPING, " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)  # range selectors
    text = re.sub(r"\b\d+(?:\.\d+)?(?:ms|[smhdwy])?\b", " ", text)  # numbers, durations
    names, functions = set(), set()
    for match in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", text):
        word = match.group(0)
        if text[match.end() :].lstrip().startswith("("):
            functions.add(word)
        elif word not in KEYWORDS:
            names.add(word)
    return names, functions, label_names


def test_the_parser_sees_metrics_not_functions_labels_or_variables() -> None:
    names, functions, labels = parse(
        "histogram_quantile(0.95, sum by (kind, le) (rate(herdsman_step_duration_seconds_bucket"
        '{namespace=~"$namespace", rollout=~"a|b"}[$__rate_interval]))) / other_metric offset 5m'
    )
    assert names == {"herdsman_step_duration_seconds_bucket", "other_metric"}
    assert functions == {"histogram_quantile", "sum", "rate"}
    assert labels == {"kind", "le", "namespace", "rollout"}


def test_every_panel_queries_only_metrics_the_operator_exports() -> None:
    exported = metrics.metric_names()
    seen = 0
    for title, expr in queries():
        names, functions, _ = parse(expr)
        assert names, f"{title}: no metric in {expr}"
        unknown = names - exported
        assert not unknown, f"panel {title!r} queries {sorted(unknown)}, not in herdsman.metrics"
        assert functions <= FUNCTIONS, f"{title}: unknown functions {functions - FUNCTIONS}"
        seen += 1
    assert seen >= 20


def test_every_label_a_query_selects_or_groups_by_belongs_to_its_metrics() -> None:
    labels = labels_of()
    for title, expr in queries():
        names, _, used = parse(expr)
        available = set().union(*(labels[n] for n in names))
        assert used <= available, f"{title}: labels {sorted(used - available)} not on {names}"


def test_the_variables_query_real_labels() -> None:
    labels = labels_of()
    variables = {v["name"]: v for v in dashboard()["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    for name in ("namespace", "rollout"):
        query = variables[name]["query"]["query"]
        match = re.fullmatch(r"label_values\((\w+)(?:\{[^}]*\})?, (\w+)\)", query)
        assert match, query
        assert match.group(1) in labels
        assert match.group(2) == name
        assert name in labels[match.group(1)]


def test_the_dashboard_shows_what_the_issue_asks_for() -> None:
    for topic, metric in TOPICS.items():
        titles = [t for t, expr in queries() if metric in parse(expr)[0]]
        assert titles, f"no panel shows {topic} ({metric})"


def test_every_panel_reads_the_selected_data_source_and_known_variables() -> None:
    defined = {v["name"] for v in dashboard()["templating"]["list"]} | BUILTIN_VARIABLES
    for panel in panels():
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        assert panel["targets"], panel["title"]
        assert panel.get("description"), f"{panel['title']}: say what the panel shows"
        ref_ids = [t["refId"] for t in panel["targets"]]
        assert len(ref_ids) == len(set(ref_ids))
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${datasource}"
            used = set(re.findall(r"\$\{?(\w+)\}?", target["expr"]))
            assert used <= defined, f"{panel['title']}: undefined {used - defined}"


def test_the_layout_is_one_grafana_can_import() -> None:
    board = dashboard()
    assert board["title"] == "Herdsman"
    assert board["id"] is None  # Grafana assigns it on import
    assert 0 < len(board["uid"]) <= 40
    assert board["schemaVersion"] >= 36
    assert "__inputs" not in board  # the sidecar imports as is: no ${DS_...} to fill in
    ids = [p["id"] for p in panels()]
    assert len(ids) == len(set(ids))
    cells: set[tuple[int, int]] = set()
    for panel in panels():
        g = panel["gridPos"]
        assert g["x"] >= 0, panel["title"]
        assert 0 < g["w"] <= 24 - g["x"], panel["title"]
        mine = {
            (x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])
        }
        assert not mine & cells, f"{panel['title']} overlaps another panel"
        cells |= mine
