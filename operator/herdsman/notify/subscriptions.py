"""Who wants to hear about which rollout: subscription annotations, in Argo's style.

    notifications.argoproj.io/subscribe.on-rollout-completed.slack: "#releases"
    herdsman.dev/subscribe.on-rollout-aborted.oncall: ""

The key names a trigger and a service configured in the notifications ConfigMap; the value the
recipients (`;`-separated, appended to the service's URL as its path when not empty). Argo's
prefix is read so manifests port; herdsman.dev's is the same thing under our name.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

PREFIXES = ("notifications.argoproj.io/subscribe.", "herdsman.dev/subscribe.")
TRIGGERS = (
    "on-rollout-completed",
    "on-rollout-aborted",
    "on-rollout-paused",
    "on-analysis-inconclusive",
    "on-rollout-step-started",
)


@dataclass(frozen=True)
class Subscription:
    trigger: str
    service: str
    recipients: tuple[str, ...]
    key: str  # the annotation, to name it in problems


def subscriptions(annotations: Mapping[str, str]) -> list[Subscription]:
    found = []
    for key, value in sorted(annotations.items()):
        prefix = next((p for p in PREFIXES if key.startswith(p)), None)
        if prefix is None:
            continue
        trigger, _, service = key[len(prefix) :].partition(".")
        recipients = tuple(r.strip() for r in (value or "").split(";") if r.strip())
        found.append(Subscription(trigger, service, recipients, key))
    return found


def problems(annotations: Mapping[str, str], services: frozenset[str] | None) -> list[str]:
    """Subscriptions that can never be delivered, each naming its annotation. `services` None:
    notifications are not configured at all (then any subscription is a problem)."""
    found = []
    for sub in subscriptions(annotations):
        field = f"metadata.annotations[{sub.key}]"
        if sub.trigger not in TRIGGERS:
            found.append(f"{field}: unknown trigger {sub.trigger!r} (one of {', '.join(TRIGGERS)})")
        elif not sub.service:
            found.append(f"{field}: no service named after the trigger")
        elif services is None or sub.service not in services:
            known = ", ".join(sorted(services or ())) or "none configured"
            found.append(f"{field}: unknown notification service {sub.service!r} ({known})")
    return found
