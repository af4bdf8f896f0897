"""The list of CRDs Herdsman serves, with their printer columns and subresources.

A new kind is one entry here plus its models; `make crds` does the rest.
"""

from __future__ import annotations

from herdsman.api.crd import AGE, CrdSpec, PrinterColumn
from herdsman.api.rollout import RolloutSpec, RolloutStatus

ROLLOUT = CrdSpec(
    kind="Rollout",
    plural="rollouts",
    spec_model=RolloutSpec,
    status_model=RolloutStatus,
    short_names=("ro", "hro"),
    scale=True,
    description="A service whose every version is an immutable server group, moved to step by step.",
    printer_columns=(
        PrinterColumn("Desired", ".spec.replicas", "integer"),
        PrinterColumn("Available", ".status.availableReplicas", "integer"),
        PrinterColumn("Phase", ".status.phase"),
        PrinterColumn("Step", ".status.step"),
        PrinterColumn("Weight", ".status.canaryWeight", "integer"),
        PrinterColumn("Stable", ".status.stableServerGroup"),
        PrinterColumn("Canary", ".status.canaryServerGroup"),
        AGE,
        PrinterColumn("Message", ".status.message", priority=1),
    ),
)

ALL: list[CrdSpec] = [ROLLOUT]
