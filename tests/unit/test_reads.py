"""Watch-fed reads by name (cluster/reads.py), through the real `Kube` and its transport against
a small API server on localhost that serves one collection (Services), its watch included.

What they must keep: a GET answers what the server holds or what this operator last wrote,
never older; nothing is served before the watch's first list; a miss, a conflict and our own
delete go to the server; a collection we may not list stays with GETs.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from aiohttp import web
from test_kube_transport import kube_for, server, status

from herdsman.cluster.budget import AccessPolicy, Deadline
from herdsman.cluster.cache import OVERLAY_SECONDS
from herdsman.cluster.kube import REPLICA_SETS, SERVICES, Kube, KubeError
from herdsman.cluster.reads import Reads, Ref, parse
from herdsman.cluster.transport import AsyncTransport

pytestmark = pytest.mark.unit


class Api:
    """Services in namespace `shop`: GET, list, watch, PATCH (merge, or refused with 409 once),
    DELETE. Counts what reaches it."""

    def __init__(self, *, list_status: int = 200) -> None:
        self.version = 10
        self.objects: dict[str, dict[str, Any]] = {}
        self.gets: list[str] = []
        self.lists: list[tuple[str, dict[str, str]]] = []
        self.events: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()  # None: end
        self.list_status = list_status
        self.conflict_next = False

    def put(self, name: str, selector: str, *, announce: bool = True) -> dict[str, Any]:
        self.version += 1
        kind = "MODIFIED" if name in self.objects else "ADDED"
        body = {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {
                "namespace": "shop",
                "name": name,
                "resourceVersion": str(self.version),
                "managedFields": [{"manager": "kubectl"}],
            },
            "spec": {"selector": {"group": selector}},
        }
        self.objects[name] = body
        if announce:
            self.events.put_nowait({"type": kind, "object": body})
        return body

    async def handle(self, request: web.Request) -> web.StreamResponse:
        parts = request.path.strip("/").split("/")  # api v1 namespaces shop services [name]
        name = parts[5] if len(parts) > 5 else ""
        if request.method == "GET" and not name and request.query.get("watch"):
            response = web.StreamResponse()
            await response.prepare(request)
            while (event := await self.events.get()) is not None:
                await response.write(json.dumps(event).encode() + b"\n")
            return response
        if request.method == "GET" and not name:
            self.lists.append((request.path, dict(request.query)))
            if self.list_status != 200:
                return status(self.list_status, "Forbidden", "services is forbidden")
            items = list(self.objects.values())
            meta = {"resourceVersion": str(self.version)}
            return web.json_response({"kind": "ServiceList", "metadata": meta, "items": items})
        if request.method == "GET":
            self.gets.append(name)
            if name not in self.objects:
                return status(404, "NotFound", f'services "{name}" not found')
            return web.json_response(self.objects[name])
        if request.method == "PATCH":
            if self.conflict_next:
                self.conflict_next = False
                return status(409, "Conflict", "the object has been modified")
            patch = await request.json()
            return web.json_response(
                self.put(name, patch["spec"]["selector"]["group"], announce=False)
            )
        if request.method == "POST":
            posted = await request.json()
            made = posted["metadata"]["name"]
            if made in self.objects:
                return status(409, "AlreadyExists", f'services "{made}" already exists')
            return web.json_response(
                self.put(made, posted["spec"]["selector"]["group"], announce=False)
            )
        if request.method == "DELETE":
            self.objects.pop(name, None)
            return web.json_response({"kind": "Status", "status": "Success"})
        return status(405, "MethodNotAllowed", request.method)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@asynccontextmanager
async def operator(
    api: Api, namespaces: tuple[str, ...] = (), clock: Clock | None = None
) -> AsyncIterator[Kube]:
    async with server(api.handle) as host:
        kube = kube_for(host, AccessPolicy(), workers=4)
        kube.reads = Reads(
            AsyncTransport(kube.transport.configuration, 4),
            {(SERVICES.base, SERVICES.plural)},
            namespaces=namespaces,
            clock=clock or Clock(),
        )
        try:
            yield kube
        finally:
            await kube.close()
            api.events.put_nowait(None)  # the server's watch handler ends


def deadline() -> Deadline:
    return Deadline(10.0)


async def until(check: Any, what: str) -> None:
    for _ in range(200):
        if check():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


async def selector(kube: Kube, name: str = "checkout") -> str | None:
    body = await kube.get(SERVICES.url("shop", name), deadline=deadline())
    return None if body is None else body["spec"]["selector"]["group"]


def listed(kube: Kube, name: str = "checkout") -> bool:
    """Whether the watch's first list is in (told by a hit for an object it holds)."""
    assert kube.reads is not None
    hit, _ = kube.reads.lookup(SERVICES.url("shop", name))
    return hit


async def watching(kube: Kube, name: str = "checkout") -> None:
    """Read `name` once from the server (which starts the watch), then wait for its first list."""
    await kube.get(SERVICES.url("shop", name), deadline=deadline())
    await until(lambda: listed(kube, name), "the first list")


def test_paths_name_their_collection_and_object() -> None:
    assert parse("/api/v1/namespaces/shop/services/checkout") == Ref(
        "/api/v1", "services", "shop", "checkout", ""
    )
    assert parse("/api/v1/namespaces/shop/services") == Ref("/api/v1", "services", "shop", "", "")
    assert parse("/api/v1/namespaces/shop") == Ref("/api/v1", "namespaces", "", "shop", "")
    assert parse("/apis/apps/v1/namespaces/a/replicasets/b/scale") == Ref(
        "/apis/apps/v1", "replicasets", "a", "b", "scale"
    )
    assert parse("/apis/herdsman.dev/v1alpha1/clusteranalysistemplates/t") == Ref(
        "/apis/herdsman.dev/v1alpha1", "clusteranalysistemplates", "", "t", ""
    )
    assert parse("/apis/gateway.networking.k8s.io/v1") is None  # discovery


def test_reads_come_from_the_watch_once_listed_and_follow_it() -> None:
    async def run() -> None:
        api = Api()
        api.put("checkout", "v1")
        async with operator(api) as kube:
            assert await selector(kube) == "v1"  # to the server; starts the watch
            assert api.gets == ["checkout"]
            await until(lambda: listed(kube), "the first list")
            # The probe, then the informer's list, both of every namespace.
            assert api.lists[0] == ("/api/v1/services", {"limit": "1"})
            assert api.lists[1][0] == "/api/v1/services"
            for _ in range(5):
                assert await selector(kube) == "v1"
            assert api.gets == ["checkout"]  # none of those reached the server
            assert kube.reads is not None
            assert kube.reads.count() == 1
            copy = await kube.get(SERVICES.url("shop", "checkout"), deadline=deadline())
            assert copy is not None
            assert "managedFields" not in copy["metadata"]
            copy["spec"]["selector"]["group"] = "mine"  # a caller's change stays its own
            assert await selector(kube) == "v1"
            api.put("checkout", "v2")  # someone else's change, through the watch
            await until(lambda: api.events.empty(), "the event sent")
            for _ in range(100):
                if await selector(kube) == "v2":
                    break
                await asyncio.sleep(0.01)
            assert await selector(kube) == "v2"
            assert api.gets == ["checkout"]

    asyncio.run(run())


def test_nothing_is_served_before_the_first_list_and_a_miss_asks_the_server() -> None:
    async def run() -> None:
        api = Api()
        async with operator(api) as kube:
            assert await selector(kube, "new") is None  # 404: no watch started for a miss
            assert await selector(kube, "new") is None
            assert api.gets == ["new", "new"]
            assert api.lists == []
            api.put("checkout", "v1", announce=False)
            assert await selector(kube) == "v1"
            await until(lambda: listed(kube), "the first list")
            # Created a moment ago, not yet seen by the watch: the server answers, and is kept.
            api.put("late", "v1", announce=False)
            assert await selector(kube, "late") == "v1"
            assert await selector(kube, "late") == "v1"
            assert api.gets == ["new", "new", "checkout", "late"]

    asyncio.run(run())


def test_an_answer_the_watch_never_confirms_is_served_only_for_a_while() -> None:
    async def run() -> None:
        api, clock = Api(), Clock()
        api.put("checkout", "v1")
        async with operator(api, clock=clock) as kube:
            await watching(kube)
            # Seen by a GET, never by the watch (say it was created and deleted while the
            # watch was cut): served for OVERLAY_SECONDS, then asked for again.
            api.put("ghost", "v1", announce=False)
            assert await selector(kube, "ghost") == "v1"
            del api.objects["ghost"]
            clock.now += OVERLAY_SECONDS - 1
            assert await selector(kube, "ghost") == "v1"
            clock.now += 2
            assert await selector(kube, "ghost") is None
            # What the watch shows is served however old.
            clock.now += 1000
            assert await selector(kube) == "v1"
            assert api.gets == ["checkout", "ghost", "ghost"]

    asyncio.run(run())


def test_an_object_only_we_create_is_absent_when_the_watch_does_not_show_it() -> None:
    async def run() -> None:
        api = Api()
        api.put("checkout", "v1")
        async with operator(api) as kube:
            url = SERVICES.url("shop", "checkout-canary")
            assert await kube.get(url, deadline=deadline(), ours=True) is None  # not listed yet
            await watching(kube)
            for _ in range(3):
                assert await kube.get(url, deadline=deadline(), ours=True) is None
            assert api.gets == ["checkout-canary", "checkout"]
            assert kube.reads is not None
            api.put("checkout-canary", "v2", announce=False)  # what our POST made, say
            kube.reads.wrote("POST", SERVICES.url("shop"), api.objects["checkout-canary"])
            created = await kube.get(url, deadline=deadline(), ours=True)
            assert created is not None  # our own write, before the watch shows it
            assert created["spec"]["selector"] == {"group": "v2"}
            await kube.delete(url, deadline=deadline())
            assert await kube.get(url, deadline=deadline(), ours=True) is None  # asked once
            assert await kube.get(url, deadline=deadline(), ours=True) is None
            assert api.gets == ["checkout-canary", "checkout", "checkout-canary"]
            # Not ours: a miss is asked for every time (a user's object may be on its way).
            assert await kube.get(url, deadline=deadline()) is None
            assert api.gets[-1] == "checkout-canary"

    asyncio.run(run())


def test_made_again_before_the_watch_told_of_the_old_ones_end() -> None:
    async def run() -> None:
        api = Api()
        old = api.put("canary", "v1")
        async with operator(api) as kube:
            url = SERVICES.url("shop", "canary")
            await watching(kube, "canary")
            await kube.delete(url, deadline=deadline())
            body = {"metadata": {"name": "canary"}, "spec": {"selector": {"group": "v2"}}}
            await kube.create(SERVICES.url("shop"), body, deadline=deadline())
            # Only now does the watch tell of the first one's end (its last version).
            api.events.put_nowait({"type": "DELETED", "object": old})
            await until(lambda: api.events.empty(), "the event sent")
            await asyncio.sleep(0.05)
            again = await kube.get(url, deadline=deadline(), ours=True)
            assert again is not None
            assert again["spec"]["selector"] == {"group": "v2"}
            # A create refused because it exists: the next read asks the server.
            with pytest.raises(KubeError) as err:
                await kube.create(SERVICES.url("shop"), body, deadline=deadline())
            assert err.value.conflict
            before = len(api.gets)
            assert await kube.get(url, deadline=deadline(), ours=True) is not None
            assert len(api.gets) == before + 1

    asyncio.run(run())


def test_our_write_is_read_back_before_the_watch_brings_it_and_never_an_older_state() -> None:
    async def run() -> None:
        api = Api()
        old = api.put("checkout", "v1")
        async with operator(api) as kube:
            await watching(kube)
            patch = {"spec": {"selector": {"group": "v2"}}}
            await kube.patch(SERVICES.url("shop", "checkout"), patch, deadline=deadline())
            assert await selector(kube) == "v2"  # the write's answer, before any event
            # A late event older than our write changes nothing.
            api.events.put_nowait({"type": "MODIFIED", "object": old})
            await until(lambda: api.events.empty(), "the stale event sent")
            await asyncio.sleep(0.05)
            assert await selector(kube) == "v2"
            assert api.gets == ["checkout"]

    asyncio.run(run())


def test_a_conflict_and_our_own_delete_send_the_next_read_to_the_server() -> None:
    async def run() -> None:
        api = Api()
        api.put("checkout", "v1")
        async with operator(api) as kube:
            await watching(kube)
            api.put("checkout", "v2", announce=False)  # changed; the watch is behind
            api.conflict_next = True
            url = SERVICES.url("shop", "checkout")
            patch = {"spec": {"selector": {"group": "v3"}}}
            with pytest.raises(KubeError) as err:
                await kube.patch(url, patch, deadline=deadline())
            assert err.value.conflict
            assert await selector(kube) == "v2"  # the truth, from the server
            assert await selector(kube) == "v2"  # and kept: served again
            assert api.gets == ["checkout", "checkout"]
            await kube.delete(url, deadline=deadline())
            assert await selector(kube) is None  # asked: gone
            assert api.gets == ["checkout", "checkout", "checkout"]

    asyncio.run(run())


def test_a_collection_we_may_not_list_stays_with_gets(caplog: pytest.LogCaptureFixture) -> None:
    async def run() -> None:
        api = Api(list_status=403)
        api.put("checkout", "v1")
        async with operator(api) as kube:
            for _ in range(3):
                assert await selector(kube) == "v1"
                await asyncio.sleep(0.05)
            assert api.gets == ["checkout"] * 3
            assert len(api.lists) == 1  # probed once, not in a loop
            assert kube.reads is not None
            assert kube.reads.count() == 0  # nothing kept that would never be served

    with caplog.at_level(logging.WARNING, logger="herdsman.reads"):
        asyncio.run(run())
    assert [r.getMessage() for r in caplog.records] == [
        "cannot list services (403 Forbidden): each pass reads them from the API server"
    ]


def test_limited_to_namespaces_each_is_watched_on_its_own_path() -> None:
    async def run() -> None:
        api = Api()
        api.put("checkout", "v1")
        async with operator(api, namespaces=("shop",)) as kube:
            await watching(kube)
            assert {path for path, _ in api.lists} == {"/api/v1/namespaces/shop/services"}
            assert await selector(kube) == "v1"
            assert api.gets == ["checkout"]
            # A kind not held is read from the server (and a kind we do not serve is a 404).
            assert kube.reads is not None
            assert kube.reads.lookup(REPLICA_SETS.url("shop", "checkout")) == (False, None)

    asyncio.run(run())
