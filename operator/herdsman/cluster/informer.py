"""One list-then-watch of a collection under a label selector, kept up until cancelled.

Why our own and not Kopf's: Kopf fixes a resource's label selector for the life of its watch
stream and resumes a broken stream from its last resourceVersion, never from a new list. A
sharded replica's set of shards moves (a replica dies, one joins), and a shard it has just won
holds Rollouts that will not change for hours: only a fresh list shows them. So each shard a
replica holds gets one of these, started when the shard's Lease is won and cancelled when it is
given up (shard_watch.py).

What it promises its consumer (`on_event(type, body)`, type ADDED, MODIFIED or DELETED):
- every object the selector matches is delivered after the first list, before any watch event;
- an object that stops matching (its label changed) or is deleted is delivered as DELETED;
- after a broken stream it resumes from the last resourceVersion seen (bookmarks included);
  when the server has compacted that version away (410), it lists again and delivers DELETED
  for whatever the new list lacks, so the consumer never keeps a ghost.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncGenerator, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

log = logging.getLogger("herdsman.informer")

PAGE = 500  # items per list page: bounded memory when a shard holds thousands
SERVER_TIMEOUT = 300  # seconds a watch request lasts before the server ends it (then resumed)
BACKOFF = (0.5, 1.0, 2.0, 5.0, 10.0)  # after failures in a row; reset by a good list or event
# A watch the server ends this much before its timeout was cut, not timed out: the API server
# drops a watcher whose events it cannot deliver fast enough ("unresponsive"), and a proxy or a
# restarting server ends streams early too.
EARLY = 10.0


class Expired(Exception):
    """The server no longer has the resourceVersion we asked to resume from (410 Gone)."""


class StreamTransport(Protocol):
    async def call(
        self,
        method: str,
        path: str,
        query: dict[str, str] | None,
        body: Any,
        content_type: str,
        seconds: float,
    ) -> tuple[int, str, bytes, dict[str, str]]: ...

    def lines(
        self, path: str, query: dict[str, str], read_seconds: float
    ) -> AsyncGenerator[bytes, None]: ...

    async def close(self) -> None: ...


Key = tuple[str, str]


def key_of(body: Mapping[str, Any]) -> Key:
    meta = body.get("metadata") or {}
    return str(meta.get("namespace") or ""), str(meta.get("name") or "")


@dataclass
class Informer:
    transport: StreamTransport
    path: str  # the collection, e.g. /apis/herdsman.dev/v1alpha1/rollouts
    selector: str
    on_event: Callable[[str, dict[str, Any]], None]
    api_version: str = ""  # set on listed items, which come without it
    kind: str = ""
    timeout: float = 30.0  # one list page's deadline
    # What the watch shows now, by key only: a re-list's DELETED needs no more than the name,
    # and the consumer holds the objects (never kept twice).
    known: set[Key] = field(default_factory=set)
    # Set once the first list has been delivered: until then the consumer's view is partial.
    listed: asyncio.Event = field(default_factory=asyncio.Event)
    # Told why each watch request ended: "timeout" (the server's, as asked), "early" (the server
    # closed it sooner), "expired" (410: listed again) or "failed" (an error; retried).
    ended: Callable[[str], None] = lambda reason: None
    _version: str = ""
    _failures: int = 0

    async def run(self) -> None:
        """List, then watch, forever; cancel the task to stop (nothing is delivered after)."""
        listed = False
        while True:
            try:
                if not listed:
                    await self._list()
                    listed = True
                await self._watch()
            except Expired:
                self.ended("expired")
                log.info("watch of %s (%s) expired; listing again", self.path, self.selector)
                listed = False
                continue
            except Exception as err:
                # Whatever it was, the watch must come back: a shard whose watch ended would
                # leave its Rollouts unseen for as long as this replica holds it.
                self.ended("failed")
                self._failures += 1
                pause = BACKOFF[min(self._failures, len(BACKOFF)) - 1]
                expected = isinstance(err, (TimeoutError, ConnectionError, ValueError))
                log.log(
                    logging.WARNING if expected else logging.ERROR,
                    "watch of %s (%s) failed (%s); again in %.1fs",
                    self.path,
                    self.selector,
                    err,
                    pause,
                    exc_info=not expected,
                )
                await asyncio.sleep(pause)

    async def _list(self) -> None:
        seen: set[Key] = set()
        query = {"labelSelector": self.selector, "limit": str(PAGE)}
        while True:
            status, reason, data, _ = await self.transport.call(
                "GET", self.path, query, None, "application/json", self.timeout
            )
            if status == 410:
                query.pop("continue", None)  # the list's snapshot expired between pages
                seen.clear()
                continue
            if status >= 400:
                raise ConnectionError(f"list {self.path}: {status} {reason}")
            page = json.loads(data)
            for item in page.get("items") or []:
                item.setdefault("apiVersion", self.api_version)
                item.setdefault("kind", self.kind)
                key = key_of(item)
                seen.add(key)
                self._deliver("MODIFIED" if key in self.known else "ADDED", item)
            meta = page.get("metadata") or {}
            if not meta.get("continue"):
                self._version = str(meta.get("resourceVersion") or "")
                break
            query["continue"] = str(meta["continue"])
        for namespace, name in [k for k in self.known if k not in seen]:
            gone = {"metadata": {"namespace": namespace, "name": name}}
            self._deliver("DELETED", {"apiVersion": self.api_version, "kind": self.kind, **gone})
        self._failures = 0
        self.listed.set()

    async def _watch(self) -> None:
        query = {
            "watch": "true",
            "labelSelector": self.selector,
            "allowWatchBookmarks": "true",
            "timeoutSeconds": str(SERVER_TIMEOUT),
            "resourceVersion": self._version,
        }
        # A watch that says nothing for a whole server timeout (bookmarks come every minute or
        # so) is a dead connection, not a quiet one.
        stream = self.transport.lines(self.path, query, SERVER_TIMEOUT + 60)
        loop = asyncio.get_running_loop()
        began = loop.time()
        async with contextlib.aclosing(stream):  # cancelled: the connection closes now
            async for line in stream:
                self._line(line)
        lasted = loop.time() - began
        if lasted >= SERVER_TIMEOUT - EARLY:
            self.ended("timeout")
            return
        # Resumed from the last version seen, so nothing is lost; but a watch cut again and
        # again means its events reach us late (the server held them until it gave up).
        self.ended("early")
        log.info(
            "watch of %s (%s) ended by the server after %.1fs of %ds; resuming",
            self.path,
            self.selector,
            lasted,
            SERVER_TIMEOUT,
        )

    def _line(self, line: bytes) -> None:
        if not line.strip():
            return
        event = json.loads(line)
        kind, body = event.get("type"), event.get("object") or {}
        if kind == "ERROR":
            if body.get("code") == 410:
                raise Expired()
            raise ConnectionError(f"watch {self.path}: {body.get('message')}")
        version = (body.get("metadata") or {}).get("resourceVersion")
        if version:
            self._version = str(version)
        if kind in ("ADDED", "MODIFIED", "DELETED"):
            self._deliver(str(kind), body)
        self._failures = 0

    def _deliver(self, kind: str, body: dict[str, Any]) -> None:
        key = key_of(body)
        if kind == "DELETED":
            self.known.discard(key)
        else:
            self.known.add(key)
        try:
            self.on_event(kind, body)
        except Exception:
            # A consumer's bug must not end the watch (the next event would never come).
            log.exception("handling a %s event of %s/%s failed", kind, *key)
