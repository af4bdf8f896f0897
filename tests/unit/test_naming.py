"""Rollouts with long names (issue 11): every name we derive that becomes a label value, a
label selector or a Service name fits in 63 characters, the same after a restart; the objects
themselves keep their whole names; short names are exactly what they always were."""

from __future__ import annotations

import re
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sim import Sim, manifest

from harness.fakes import FakeSecrets
from herdsman.analysis.providers.base import ProviderContext
from herdsman.analysis.providers.job import LABEL_METRIC, LABEL_RUN, job_body, job_name
from herdsman.api.base import LabelSelector
from herdsman.api.experiment import ExperimentTemplate
from herdsman.api.job import JobMetric
from herdsman.api.pod_template import AntiAffinity
from herdsman.api.registry import ROLLOUT
from herdsman.api.rollout import Rollout
from herdsman.cli.lint import lint_object
from herdsman.cluster.apply import replica_set
from herdsman.cluster.budget import AccessPolicy
from herdsman.cluster.observe import _group_of, _named_selector
from herdsman.engine import experiment as experiment_engine
from herdsman.engine.affinity import with_anti_affinity
from herdsman.engine.world import NewGroup, ServiceState
from herdsman.naming import (
    LABEL_GROUP,
    LABEL_ROLLOUT,
    LONGEST_SUFFIX,
    MAX_LABEL_VALUE,
    MAX_OBJECT_NAME,
    MAX_ROLLOUT_NAME,
    analysis_run_name,
    baseline_name,
    experiment_name,
    group_name,
    label_value,
    template_hash,
)
from herdsman.traffic.appmesh import desired_node

pytestmark = pytest.mark.unit

# Kubernetes' own definitions (apimachinery validation).
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")

LONG = "payments-" + "x" * 82 + "-checkout"  # 100 characters
assert len(LONG) == 100


def is_label_value(value: str) -> bool:
    return len(value) <= MAX_LABEL_VALUE and LABEL_VALUE.match(value) is not None


# Object names: DNS subdomains, as the API server admits them (and our suffixes keep them so).
names = st.from_regex(r"[a-z0-9]([-a-z0-9.]{0,250}[a-z0-9])?", fullmatch=True)


# --- label_value --------------------------------------------------------------------------------


@given(st.text(max_size=300))
def test_any_string_becomes_a_valid_label_value_and_always_the_same_one(name: str) -> None:
    value = label_value(name)
    assert is_label_value(value), value
    assert label_value(name) == value  # derived from the name alone: a restart agrees


@given(names)
def test_a_name_that_is_a_label_value_is_unchanged_and_a_longer_one_keeps_its_prefix(
    name: str,
) -> None:
    value = label_value(name)
    if len(name) <= MAX_LABEL_VALUE and LABEL_VALUE.match(name):
        assert value == name
    else:
        assert len(value) == MAX_LABEL_VALUE or not name[:52].strip("-.")
        prefix = value.rsplit("-", 1)[0]
        assert name.startswith(prefix), (name, value)


@given(
    st.from_regex(r"[a-z0-9][-a-z0-9]{59}", fullmatch=True),
    st.lists(st.from_regex(r"[-a-z0-9]{1,150}[a-z0-9]", fullmatch=True), min_size=2, max_size=8),
)
def test_long_names_sharing_a_60_character_prefix_stay_apart(prefix: str, tails: list[str]) -> None:
    """The 52-character prefix is the same for all of them: only the hash tells them apart."""
    distinct = {prefix + tail for tail in tails}
    assert len({label_value(n) for n in distinct}) == len(distinct)


def test_the_revisions_and_kinds_of_one_long_rollout_have_distinct_labels() -> None:
    derived = [group_name(LONG, r) for r in range(1, 300)]
    derived += [baseline_name(LONG, r) for r in range(1, 300)]
    derived += [analysis_run_name(LONG, 7, "step", s, a) for s in range(20) for a in range(5)]
    assert len({label_value(n) for n in derived}) == len(derived)


def test_short_names_are_byte_for_byte_what_they_were() -> None:
    """Existing clusters carry these in labels and selectors: not one may change."""
    assert group_name("checkout", 7) == "checkout-v007"
    assert baseline_name("checkout", 7) == "checkout-v007-baseline"
    assert analysis_run_name("checkout", 7, "step", 2, 0) == "checkout-v007-step2-a0"
    assert experiment_name("checkout", 7, 2, 1) == "checkout-v007-exp2-a1"
    for name in ("checkout-v007", "checkout-v007-baseline", "a" * 63, "x.y_z-1"):
        assert label_value(name) == name
    template = {
        "metadata": {"labels": {"app": "checkout"}},
        "spec": {"containers": [{"name": "app", "image": "app:v1"}]},
    }
    assert template_hash(template) == "vg8nvjvgzk"  # as computed before the hash was shared


def test_a_long_value_is_a_prefix_a_dash_and_a_hash_of_the_safe_alphabet() -> None:
    value = label_value(group_name(LONG, 7))
    assert len(value) == 63
    assert value.startswith(LONG[:52])
    assert re.fullmatch(r"[bcdfghjklmnpqrstvwxz2456789]{10}", value[-10:])
    assert value[-11] == "-"


# --- the names of a 100-character rollout ------------------------------------------------------


def test_a_100_character_rollouts_objects_keep_their_whole_names() -> None:
    assert group_name(LONG, 7) == LONG + "-v007"
    for name in (
        baseline_name(LONG, 7),
        analysis_run_name(LONG, 7, "step", 2, 0),
        analysis_run_name(LONG, 7, "background", None, 1),
        experiment_name(LONG, 7, 3, 0),
    ):
        assert name.startswith(LONG + "-v007-")
        assert SUBDOMAIN.match(name)
        assert len(name) <= MAX_OBJECT_NAME
        assert is_label_value(label_value(name))


def test_the_name_limit_leaves_room_for_the_longest_derived_name() -> None:
    assert LONGEST_SUFFIX == "-v99999-postpromotion-a999"
    assert MAX_ROLLOUT_NAME == MAX_OBJECT_NAME - len(LONGEST_SUFFIX) == 227
    longest = "r" * MAX_ROLLOUT_NAME
    for kind in ("prePromotion", "postPromotion", "background"):
        assert len(analysis_run_name(longest, 99_999, kind, None, 999)) <= MAX_OBJECT_NAME
    assert len(analysis_run_name(longest, 99_999, "step", 99, 999)) <= MAX_OBJECT_NAME
    assert len(baseline_name(longest, 99_999)) <= MAX_OBJECT_NAME
    assert len(experiment_name(longest, 99_999, 99, 999)) <= MAX_OBJECT_NAME


def rollout_named(name: str, **canary: Any) -> dict[str, Any]:
    body = manifest(**canary)
    body["metadata"]["name"] = name
    return body


def test_lint_and_the_crd_agree_on_the_name_limit() -> None:
    schema = ROLLOUT.manifest()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    assert schema["properties"]["metadata"]["properties"]["name"]["maxLength"] == 227
    assert lint_object(rollout_named("r" * MAX_ROLLOUT_NAME)).errors == []
    assert lint_object(rollout_named(LONG)).errors == []
    errors = lint_object(rollout_named("r" * (MAX_ROLLOUT_NAME + 1))).errors
    assert [e.path for e in errors] == ["metadata.name"]
    assert "227" in str(errors[0])


# --- where the names meet labels -----------------------------------------------------------------


def test_a_long_rollouts_replica_set_carries_label_values_its_selector_matches() -> None:
    rollout = Rollout.model_validate(rollout_named(LONG))
    name = group_name(LONG, 7)
    group = NewGroup(
        name=name,
        revision=7,
        pod_hash="abc",
        kind="release",
        replicas=3,
        template=rollout.spec.pod_template,
    )
    rs = replica_set(rollout, group, rollout.spec.pod_template)
    assert rs["metadata"]["name"] == name  # the object keeps its whole name
    labels = rs["metadata"]["labels"]
    pod_labels = rs["spec"]["template"]["metadata"]["labels"]
    for values in (labels, pod_labels, rs["spec"]["selector"]["matchLabels"]):
        assert all(is_label_value(v) for v in values.values()), values
    assert labels[LABEL_GROUP] == label_value(name) != name
    assert labels[LABEL_ROLLOUT] == label_value(LONG) != LONG
    assert LabelSelector.model_validate(rs["spec"]["selector"]).matches(pod_labels)


def test_a_services_selector_and_pods_are_read_back_as_the_group_they_select() -> None:
    name = group_name(LONG, 7)
    by_label = {label_value(name): name, "checkout-v001": "checkout-v001"}
    svc = ServiceState("web", True, {"app": "web", LABEL_GROUP: label_value(name)})
    assert _named_selector(svc, by_label).selector == {"app": "web", LABEL_GROUP: name}
    short = ServiceState("web", True, {LABEL_GROUP: "checkout-v001"})
    assert _named_selector(short, by_label) is short
    assert _group_of(label_value(name), by_label) == name
    # A label of a group that is gone stays what it is: it names no group we have.
    assert _group_of("gone-v003", by_label) == "gone-v003"


def test_routers_and_affinity_select_a_long_group_by_its_label_value() -> None:
    name = group_name(LONG, 7)
    node = desired_node({"spec": {"podSelector": {"matchLabels": {"app": "web"}}}}, name)
    assert node["podSelector"]["matchLabels"] == {"app": "web", LABEL_GROUP: label_value(name)}
    template = with_anti_affinity({"spec": {}}, _any_anti_affinity(), name)
    term = template["spec"]["affinity"]["podAntiAffinity"][
        "requiredDuringSchedulingIgnoredDuringExecution"
    ][0]
    assert term["labelSelector"]["matchLabels"] == {LABEL_GROUP: label_value(name)}


def _any_anti_affinity() -> AntiAffinity:
    return AntiAffinity.model_validate({"requiredDuringSchedulingIgnoredDuringExecution": {}})


def test_a_long_runs_job_has_label_values_and_a_name_of_at_most_63() -> None:
    run = analysis_run_name(LONG, 7, "step", 2, 0)
    context = ProviderContext(
        namespace="shop",
        secrets=FakeSecrets(),
        policy=AccessPolicy(),
        metric="error-rate",
        run_name=run,
        run_uid="u1",
        measurement=3,
    )
    spec = JobMetric.model_validate(
        {"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "busybox"}]}}}}
    )
    name = job_name(run, "error-rate", 3)
    body = job_body(spec, context, name)
    labels = body["metadata"]["labels"]
    assert labels[LABEL_RUN] == label_value(run)
    assert labels[LABEL_METRIC] == "error-rate"
    assert all(is_label_value(v) for v in labels.values())
    assert len(name) <= 63
    assert SUBDOMAIN.match(name)
    assert body["metadata"]["ownerReferences"][0]["name"] == run  # the run's whole name


def test_the_services_of_a_long_experiments_templates_are_63_and_apart() -> None:
    exp = experiment_name(LONG, 7, 0, 0)
    templates = [
        ExperimentTemplate.model_validate(
            {
                "name": n,
                "service": {},
                "selector": {"matchLabels": {"app": "web"}},
                "template": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{"name": "c", "image": "app:v1"}]},
                },
            }
        )
        for n in ("baseline", "canary")
    ]
    names = [experiment_engine.service_name(exp, t) for t in templates]
    assert all(n is not None and len(n) <= 63 and SUBDOMAIN.match(n) for n in names)
    assert len(set(names)) == 2  # cut at 63 alone, both were the experiment's name


# --- the engine, with a long name all the way ----------------------------------------------------


def test_a_long_rollout_with_a_baseline_runs_its_canary_to_healthy() -> None:
    body = rollout_named(
        LONG,
        steps=[{"setWeight": 20}, {"pause": {"duration": "10s"}}, {"setWeight": 60}],
        baseline=True,
    )
    sim = Sim.of(body)
    sim.run_until(lambda s: s.status.phase == "Healthy")
    sim.set_image("app:v2")
    seen: set[str] = set()

    def healthy_again(s: Sim) -> bool:
        seen.update(s.groups)
        return s.status.phase == "Healthy" and s.status.stable_server_group == group_name(LONG, 2)

    sim.run_until(healthy_again)
    assert {group_name(LONG, 1), group_name(LONG, 2), baseline_name(LONG, 1)} <= seen
