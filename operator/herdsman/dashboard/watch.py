"""A small list-then-watch client for the dashboard, on aiohttp.

Why not Kopf or the kubernetes client: Kopf's watches belong to the operator's handlers, and
the kubernetes client's watch is synchronous (a thread blocked per kind, hard to cancel). This
one is the informer pattern at its smallest: LIST once, then WATCH from that resourceVersion with
bookmarks; a 410 Gone (the version was compacted) means LIST again; any other failure waits a
little (jittered, capped) and starts over. So the dashboard costs the API server one LIST and one
long-lived WATCH per kind and namespace, however many browsers look at it.

Credentials come from a kubernetes `ApiClient` the caller built (kubeconfig or in-cluster):
its host, CA, client certificate and bearer token (its `auth_settings()`, asked again on every
request, so the in-cluster token's refresh hook keeps it current). This module never imports the kubernetes
client itself: it reads the configuration object it is handed.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp

from herdsman.cluster.kube import Path

log = logging.getLogger("herdsman.dashboard.watch")

WATCH_SECONDS = 290
"""The API server closes a watch after this; we open the next from the last version seen."""
BACKOFF_BASE, BACKOFF_CAP = 0.5, 15.0


class Gone(Exception):
    """The resourceVersion we watched from is too old: list again."""


class WatchError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status


@dataclass(frozen=True)
class Event:
    type: str  # ADDED, MODIFIED, DELETED
    object: dict[str, Any]


class Watches:
    """Lists and watches with the credentials of one kubernetes ApiClient's configuration."""

    def __init__(self, configuration: Any) -> None:
        self.configuration = configuration
        self.host = str(configuration.host).rstrip("/")
        self._session: aiohttp.ClientSession | None = None

    def _ssl(self) -> ssl.SSLContext | bool:
        cfg = self.configuration
        if not self.host.startswith("https"):
            return False
        if not cfg.verify_ssl:
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        else:
            context = ssl.create_default_context(cafile=cfg.ssl_ca_cert or None)
        if cfg.cert_file:
            context.load_cert_chain(cfg.cert_file, cfg.key_file or None)
        return context

    def _headers(self) -> dict[str, str]:
        """The generated client's own auth settings (bearer token, refreshed by its hook)."""
        headers = {"Accept": "application/json"}
        for setting in (self.configuration.auth_settings() or {}).values():
            if setting.get("in") == "header" and setting.get("value"):
                headers[str(setting["key"])] = str(setting["value"])
        return headers

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(ssl=self._ssl(), limit=64)
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def list(
        self, url: str, *, field_selector: str | None = None
    ) -> tuple[list[dict[str, Any]], str]:
        """Every object at `url` and the list's resourceVersion (to watch from)."""
        params = {"fieldSelector": field_selector} if field_selector else {}
        timeout = aiohttp.ClientTimeout(total=60)
        async with self.session.get(
            self.host + url, params=params, headers=self._headers(), timeout=timeout
        ) as answer:
            if answer.status >= 400:
                raise WatchError(answer.status, await answer.text())
            body = await answer.json()
        items: list[dict[str, Any]] = body.get("items") or []
        return items, str((body.get("metadata") or {}).get("resourceVersion", ""))

    async def watch(
        self, url: str, version: str, *, field_selector: str | None = None
    ) -> AsyncIterator[Event | str]:
        """Changes after `version`: Events, and bare versions from bookmarks (nothing changed)."""
        params = {
            "watch": "true",
            "resourceVersion": version,
            "allowWatchBookmarks": "true",
            "timeoutSeconds": str(WATCH_SECONDS),
        }
        if field_selector:
            params["fieldSelector"] = field_selector
        timeout = aiohttp.ClientTimeout(total=WATCH_SECONDS + 30, sock_connect=10)
        async with self.session.get(
            self.host + url, params=params, headers=self._headers(), timeout=timeout
        ) as answer:
            if answer.status == 410:
                raise Gone()
            if answer.status >= 400:
                raise WatchError(answer.status, await answer.text())
            async for line in answer.content:
                if not line.strip():
                    continue
                event = json.loads(line)
                kind, obj = event.get("type"), event.get("object") or {}
                if kind == "ERROR":
                    if obj.get("code") == 410:
                        raise Gone()
                    raise WatchError(int(obj.get("code") or 500), str(obj.get("message")))
                if kind == "BOOKMARK":
                    yield str((obj.get("metadata") or {}).get("resourceVersion", ""))
                    continue
                yield Event(str(kind), obj)


Sink = Callable[[str, list[dict[str, Any]] | Event], Awaitable[None]]
"""Receives ("SYNC", every object) after each LIST, then ("EVENT", one change) per change."""


async def inform(
    watches: Watches,
    path: Path,
    namespace: str | None,
    sink: Sink,
    *,
    field_selector: str | None = None,
    on_state: Callable[[str], None] = lambda _: None,
) -> None:
    """List and watch `path` in `namespace` (None: every namespace) until cancelled."""
    url = path.url(namespace)
    failures = 0
    while True:
        try:
            items, version = await watches.list(url, field_selector=field_selector)
            await sink("SYNC", items)
            on_state("")
            failures = 0
            while True:
                async for change in watches.watch(url, version, field_selector=field_selector):
                    if isinstance(change, str):
                        version = change or version
                        continue
                    version = str(
                        (change.object.get("metadata") or {}).get("resourceVersion") or version
                    )
                    await sink("EVENT", change)
        except asyncio.CancelledError:
            raise
        except Gone:
            continue  # compacted: list again at once
        except Exception as exc:  # the API server restarted, a proxy dropped us, 403...
            failures += 1
            on_state(f"{url}: {exc}"[:300])
            log.info("watch %s failed (%s); listing again", url, exc)
            delay = min(BACKOFF_CAP, BACKOFF_BASE * 2 ** min(failures, 6))
            await asyncio.sleep(delay * random.uniform(0.5, 1.0))
