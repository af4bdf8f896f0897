"""The notifier the reconcile loop calls after each pass whose status was written."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from herdsman.api.rollout import Rollout
from herdsman.engine.world import Decision
from herdsman.notify.config import Services, ServiceSource
from herdsman.notify.deliver import Deliverer, Message
from herdsman.notify.messages import fired
from herdsman.notify.subscriptions import subscriptions

log = logging.getLogger("herdsman.notify")


def with_recipients(url: str, recipients: tuple[str, ...]) -> list[str]:
    """One URL per recipient (appended as a path), or the service's URL alone."""
    if not recipients:
        return [url]
    return [url.rstrip("/") + "/" + r.lstrip("/") for r in recipients]


def messages(rollout: Rollout, decision: Decision, services: Services) -> list[Message]:
    subs = subscriptions(rollout.metadata.annotations or {})
    if not subs:
        return []
    out = []
    for event in fired(rollout, decision):
        for sub in subs:
            url = services.urls.get(sub.service)
            if sub.trigger != event.trigger or url is None:
                continue
            for target in with_recipients(url, sub.recipients):
                out.append(
                    Message(
                        url=target,
                        title=event.title,
                        body=event.text(services.templates),
                        what=f"{event.fields['rollout']} {event.trigger} -> {sub.service}",
                    )
                )
    return out


@dataclass
class Notifier:
    source: ServiceSource
    deliverer: Deliverer

    async def services(self) -> Services:
        try:
            return await self.source.services()
        except Exception as err:  # never fail a reconcile over notifications
            log.warning("notification services unreadable: %s", err)
            return Services()

    async def after_pass(self, rollout: Rollout, decision: Decision) -> None:
        if not decision.transitions and not decision.status.pause_conditions:
            return
        for message in messages(rollout, decision, await self.services()):
            self.deliverer.submit(message)
