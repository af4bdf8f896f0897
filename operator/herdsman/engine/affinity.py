"""antiAffinity (Argo's): keep a new revision's pods off the nodes the previous one runs on.

Argo injects the rule into the new ReplicaSet's pod template, against the stable ReplicaSet's
pods, so that a node failure cannot take out both versions at once and a canary is judged on
different nodes than the stable. The same here, at creation (a group's template is never
changed afterwards): the new group's pods avoid the pods of the group that is stable (or
active) when it is created, by its server-group label, per host. The pod hash is computed from
the spec's template before injection, so the same spec is the same revision either way.
"""

from __future__ import annotations

import copy
from typing import Any

from herdsman.api.pod_template import AntiAffinity
from herdsman.naming import LABEL_GROUP, label_value

HOST = "kubernetes.io/hostname"


def with_anti_affinity(
    template: dict[str, Any], rule: AntiAffinity | None, older: str | None
) -> dict[str, Any]:
    """The template with an anti-affinity term against group `older`'s pods added."""
    if rule is None or not older:
        return template
    out = copy.deepcopy(template)
    spec = out.setdefault("spec", {})
    anti = spec.setdefault("affinity", {}).setdefault("podAntiAffinity", {})
    term = {
        "labelSelector": {"matchLabels": {LABEL_GROUP: label_value(older)}},
        "topologyKey": HOST,
    }
    preferred = rule.preferred_during_scheduling_ignored_during_execution
    if preferred is not None:
        anti.setdefault("preferredDuringSchedulingIgnoredDuringExecution", []).append(
            {"weight": preferred.weight, "podAffinityTerm": term}
        )
    else:
        anti.setdefault("requiredDuringSchedulingIgnoredDuringExecution", []).append(term)
    return out
