"""Names, labels and hashes: how Herdsman recognises the objects it owns after a restart.

Every object the operator creates has a name derived only from persisted facts (rollout name,
revision, step index, attempt), so a create that is repeated after a crash finds its earlier
self (409) instead of making a twin.
"""

from __future__ import annotations

import hashlib
import json
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


def template_hash(template: dict[str, Any]) -> str:
    """A stable 10-character hash of a pod template: same template, same server group."""
    canonical = json.dumps(template, sort_keys=True, separators=(",", ":")).encode()
    digest = int.from_bytes(hashlib.sha256(canonical).digest()[:8], "big")
    chars = []
    for _ in range(10):
        digest, rem = divmod(digest, len(_ALPHABET))
        chars.append(_ALPHABET[rem])
    return "".join(chars)


def group_name(rollout: str, revision: int) -> str:
    """Spinnaker's convention: checkout-v007."""
    return f"{rollout}-v{revision:03d}"


def baseline_name(rollout: str, stable_revision: int) -> str:
    return f"{group_name(rollout, stable_revision)}-baseline"


def analysis_run_name(
    rollout: str, revision: int, kind: str, step: int | None, attempt: int
) -> str:
    """e.g. checkout-v007-step2-a0, checkout-v007-background-a1."""
    where = f"{kind}{step}" if step is not None else kind
    return f"{group_name(rollout, revision)}-{where.lower()}-a{attempt}"
