"""Names, labels and hashes: how Herdsman recognises the objects it owns after a restart.

Every object the operator creates has a name derived only from persisted facts (rollout name,
revision, step index, attempt), so a create that is repeated after a crash finds its earlier
self (409) instead of making a twin.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from typing import Any

PREFIX = "herdsman.dev"
LABEL_ROLLOUT = f"{PREFIX}/rollout"
LABEL_REVISION = f"{PREFIX}/revision"
LABEL_HASH = f"{PREFIX}/pod-template-hash"
LABEL_GROUP = f"{PREFIX}/server-group"
LABEL_KIND = f"{PREFIX}/group-kind"  # "release" or "baseline"
LABEL_MANAGED = "app.kubernetes.io/managed-by"
MANAGED_BY = "herdsman"
ANNOTATION_SERVICE_OWNER = f"{PREFIX}/managed-by-rollout"
# On a Rollout while `kubectl herdsman import` hands an Argo Rollout's ReplicaSets over.
ANNOTATION_IMPORTING = f"{PREFIX}/import-in-progress"
ANNOTATION_IMPORTED_FROM = f"{PREFIX}/imported-from"

_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"  # the Kubernetes safe alphabet: no vowels, no 0/1/3


MAX_LABEL_VALUE = 63
MAX_OBJECT_NAME = 253  # a DNS subdomain: ReplicaSet, AnalysisRun, Experiment names
HASH_LENGTH = 10
# A label value: empty, or alphanumerics at both ends with `-_.` allowed between.
_LABEL_VALUE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$")
_NOT_IN_LABEL = re.compile(r"[^-A-Za-z0-9_.]")


def _safe_hash(data: bytes) -> str:
    """HASH_LENGTH characters of the safe alphabet from sha256(data): ~47 bits."""
    digest = int.from_bytes(hashlib.sha256(data).digest()[:8], "big")
    chars = []
    for _ in range(HASH_LENGTH):
        digest, rem = divmod(digest, len(_ALPHABET))
        chars.append(_ALPHABET[rem])
    return "".join(chars)


def template_hash(template: dict[str, Any]) -> str:
    """A stable 10-character hash of a pod template: same template, same server group."""
    return _safe_hash(json.dumps(template, sort_keys=True, separators=(",", ":")).encode())


def label_value(name: str) -> str:
    """`name` as a label value (at most 63 characters, alphanumeric at both ends), e.g. a
    server group's name in the herdsman.dev/server-group label, or a Service name.

    A name that is already one comes back unchanged (existing clusters carry those labels).
    A longer one becomes a prefix of it plus `-` and a hash of the whole: computed from the
    name alone, so a restarted operator derives the same value and its selectors still match;
    names sharing a long prefix still differ in the hash.
    """
    if len(name) <= MAX_LABEL_VALUE and _LABEL_VALUE.match(name):
        return name
    digest = _safe_hash(name.encode())
    room = MAX_LABEL_VALUE - HASH_LENGTH - 1
    prefix = _NOT_IN_LABEL.sub("", name)[:room].strip("-_.")
    return f"{prefix}-{digest}" if prefix else digest


def owner_name(meta: Mapping[str, Any], kind: str) -> str | None:
    """The name of the object's owner of `kind` (its ownerReferences), if any."""
    refs = meta.get("ownerReferences") or []
    return next((r.get("name") for r in refs if r.get("kind") == kind), None)


def group_name(rollout: str, revision: int) -> str:
    """Spinnaker's convention: checkout-v007. The ReplicaSet's name, kept whole however long
    the rollout's name is; its label (herdsman.dev/server-group) is label_value() of it."""
    return f"{rollout}-v{revision:03d}"


def baseline_name(rollout: str, stable_revision: int) -> str:
    return f"{group_name(rollout, stable_revision)}-baseline"


def analysis_run_name(
    rollout: str, revision: int, kind: str, step: int | None, attempt: int
) -> str:
    """e.g. checkout-v007-step2-a0, checkout-v007-background-a1."""
    where = f"{kind}{step}" if step is not None else kind
    return f"{group_name(rollout, revision)}-{where.lower()}-a{attempt}"


def experiment_name(rollout: str, revision: int, index: int, attempt: int) -> str:
    """An experiment step's Experiment, e.g. checkout-v007-exp2-a0."""
    return f"{group_name(rollout, revision)}-exp{index}-a{attempt}"


# The longest object name Herdsman derives from a rollout's: a blue-green post-promotion
# AnalysisRun, with room for revisions up to 99999 and attempts up to 999 (26 characters).
# Label values and Service names made from these go through label_value(); the objects keep
# their whole names, and an object name is a DNS subdomain (253 characters).
LONGEST_SUFFIX = analysis_run_name("", 99_999, "postPromotion", None, 999)
MAX_ROLLOUT_NAME = MAX_OBJECT_NAME - len(LONGEST_SUFFIX)
