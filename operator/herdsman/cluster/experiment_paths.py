"""Where Experiments live in the API, and the labels on what they own: shared by the Rollout's
side (its experiment steps) and the Experiment's own loop, apart so neither imports the other."""

from __future__ import annotations

import hashlib

from herdsman.cluster.kube import Path
from herdsman.naming import PREFIX

EXPERIMENTS = Path("herdsman.dev", "v1alpha1", "experiments")

LABEL_EXPERIMENT = f"{PREFIX}/experiment"
LABEL_EXPERIMENT_TEMPLATE = f"{PREFIX}/experiment-template"
LABEL_EXPERIMENT_ANALYSIS = f"{PREFIX}/experiment-analysis"
LABEL_STEP = f"{PREFIX}/step"
LABEL_ATTEMPT = f"{PREFIX}/attempt"


def label_value(name: str) -> str:
    """An object name as a label value (at most 63 characters): cut, with a hash of the whole."""
    if len(name) <= 63:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:10]
    return f"{name[:52].rstrip('-.')}-{digest}"
