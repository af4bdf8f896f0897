"""Where a valid manifest means something slightly different under Herdsman than under Argo
Rollouts: `kubectl herdsman lint` warns (exit 0) instead of refusing, naming the field."""

from __future__ import annotations

from herdsman.api.rollout import Rollout


def rollout_warnings(rollout: Rollout) -> list[tuple[str, str]]:
    """(field path, what differs) for each deliberate difference this Rollout touches."""
    found: list[tuple[str, str]] = []
    spec = rollout.spec
    ref = spec.workload_ref
    if ref is not None and spec.template is not None:
        found.append(
            (
                "spec.template",
                "set beside workloadRef: the operator holds this Rollout as InvalidSpec until"
                " spec.template is removed (Argo's controller refuses it too)",
            )
        )
    canary, blue_green = spec.strategy.canary, spec.strategy.blue_green
    for path, meta in (
        ("spec.strategy.canary.canaryMetadata", canary and canary.canary_metadata),
        ("spec.strategy.canary.stableMetadata", canary and canary.stable_metadata),
        ("spec.strategy.blueGreen.activeMetadata", blue_green and blue_green.active_metadata),
        ("spec.strategy.blueGreen.previewMetadata", blue_green and blue_green.preview_metadata),
    ):
        if meta:
            found.append(
                (
                    path,
                    "set on the role's running pods in place; unlike Argo, the server group's"
                    " pod template is never changed, so a new pod gets it a moment after it starts",
                )
            )
    for i, step in enumerate(canary.steps if canary is not None else []):
        kinds = [k for k in step.kinds if k not in ("setHeaderRoute", "setMirrorRoute")]
        if len(kinds) > 1:
            found.append(
                (
                    f"spec.strategy.canary.steps[{i}]",
                    f"combines {' and '.join(kinds)}: Argo's controller moves on once the"
                    f" {kinds[0]} part is done; Herdsman waits until every part is",
                )
            )
    return found
