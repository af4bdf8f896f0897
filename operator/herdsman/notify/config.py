"""The notification services, configured once for the operator: a ConfigMap and a Secret.

    # ConfigMap herdsman-notifications
    service.releases: json://hooks.example.com/herdsman        # any Apprise URL
    service.slack: slack://$slack-token/#releases              # $key: from the Secret
    template.on-rollout-aborted: "{rollout} aborted: {message}" # str.format fields (messages.py)

Read at most every `ttl` seconds (a pass never waits on it twice), so an edit takes effect
within that time without a restart.
"""

from __future__ import annotations

import base64
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from herdsman.cluster.budget import AccessPolicy
from herdsman.cluster.kube import CONFIG_MAPS, SECRETS, Kube

_SECRET_REF = re.compile(r"\$([A-Za-z0-9_.-]+)")


@dataclass(frozen=True)
class Services:
    urls: dict[str, str] = field(default_factory=dict)  # service name -> Apprise URL
    templates: dict[str, str] = field(default_factory=dict)  # trigger -> template

    @property
    def names(self) -> frozenset[str]:
        return frozenset(self.urls)


def parse(config: dict[str, str], secret: dict[str, str]) -> Services:
    """`secret` holds decoded values; `$key` in a URL is replaced by the Secret's key."""
    urls, templates = {}, {}
    for key, value in config.items():
        if key.startswith("service."):
            urls[key[len("service.") :]] = _SECRET_REF.sub(
                lambda m: secret.get(m.group(1), m.group(0)), value.strip()
            )
        elif key.startswith("template."):
            templates[key[len("template.") :]] = value
    return Services(urls, templates)


def decode(data: dict[str, str] | None) -> dict[str, str]:
    return {k: base64.b64decode(v).decode() for k, v in (data or {}).items()}


async def read(kube: Kube, policy: AccessPolicy, configmap: str, secret: str) -> Services:
    """The services from the cluster: `configmap` and `secret` as NAMESPACE/NAME (the Secret
    may be absent: then no `$key` is replaced)."""
    deadline = policy.reconcile_deadline()
    cm_ns, _, cm_name = configmap.rpartition("/")
    s_ns, _, s_name = secret.rpartition("/")
    cm = await kube.get(CONFIG_MAPS.url(cm_ns or "default", cm_name), deadline=deadline)
    found = await kube.get(SECRETS.url(s_ns or "default", s_name), deadline=deadline)
    return parse((cm or {}).get("data") or {}, decode((found or {}).get("data") or {}))


@dataclass
class ServiceSource:
    """The services, re-read when older than `ttl` seconds."""

    load: Callable[[], Awaitable[Services]]
    ttl: float = 10.0
    _cached: Services | None = None
    _at: float = 0.0

    async def services(self) -> Services:
        if self._cached is not None and time.monotonic() - self._at < self.ttl:
            return self._cached
        self._cached = await self.load()
        self._at = time.monotonic()
        return self._cached
