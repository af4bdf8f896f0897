"""Per-shard watches: the informer (list, watch, resume, re-list) and the two views merged.

The informer runs against a scripted transport: each list page and each watch stream is what
the API server would send, so a 410 in the middle of a stream, a broken connection and a page
that continues are all replayed exactly. The e2e (test_sharding) checks the same against the
real API server, through each replica's `herdsman_rollouts_cached` gauge.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncGenerator
from typing import Any

import pytest

from herdsman.cluster import informer as informer_module
from herdsman.cluster.cache import Cache
from herdsman.cluster.informer import Informer
from herdsman.reconcile import Runtime
from herdsman.shard_watch import RolloutViews, shard_selector, unlabelled_selector
from herdsman.sharding import LABEL_SHARD, Shards, shard_of
from herdsman.workqueue import DONE

pytestmark = pytest.mark.unit

PATH = "/apis/herdsman.dev/v1alpha1/namespaces/shop/rollouts"


def body(name: str, version: int, namespace: str = "shop", **labels: str) -> dict[str, Any]:
    return {
        "metadata": {
            "namespace": namespace,
            "name": name,
            "resourceVersion": str(version),
            "labels": labels,
        }
    }


def event(kind: str, obj: dict[str, Any]) -> bytes:
    return json.dumps({"type": kind, "object": obj}).encode()


class Script:
    """The API server, scripted: list answers and watch streams, taken in order."""

    def __init__(self, lists: list[tuple[int, dict[str, Any]]], watches: list[Any]) -> None:
        self.lists, self.watches = lists, watches
        self.calls: list[tuple[str, dict[str, str]]] = []
        self.idle = asyncio.Event()

    async def call(
        self,
        method: str,
        path: str,
        query: dict[str, str] | None,
        body: Any,
        content_type: str,
        seconds: float,
    ) -> tuple[int, str, bytes, dict[str, str]]:
        self.calls.append(("list", dict(query or {})))
        status, page = self.lists.pop(0)
        return status, "", json.dumps(page).encode(), {}

    async def lines(
        self, path: str, query: dict[str, str], read_seconds: float
    ) -> AsyncGenerator[bytes, None]:
        self.calls.append(("watch", dict(query)))
        if not self.watches:
            self.idle.set()
            await asyncio.Event().wait()  # a quiet stream, until cancelled
        step = self.watches.pop(0)
        if isinstance(step, BaseException):
            raise step
        for line in step:
            yield line


def page(items: list[dict[str, Any]], version: int, more: str = "") -> dict[str, Any]:
    meta: dict[str, Any] = {"resourceVersion": str(version)}
    if more:
        meta["continue"] = more
    return {"items": items, "metadata": meta}


async def drive(script: Script, informer: Informer) -> None:
    task = asyncio.create_task(informer.run())
    await asyncio.wait_for(script.idle.wait(), 5)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


def test_the_informer_lists_every_page_then_watches_from_the_list_s_version() -> None:
    seen: list[tuple[str, str]] = []
    script = Script(
        lists=[
            (200, page([body("a", 5)], 9, more="next")),
            (200, page([body("b", 7)], 10)),
        ],
        watches=[
            [
                event("MODIFIED", body("a", 11)),
                b"",
                event("BOOKMARK", {"metadata": {"resourceVersion": "15"}}),
                event("DELETED", body("b", 16)),
            ],
        ],
    )
    informer = Informer(
        script, PATH, "herdsman.dev/shard=1", lambda k, b: seen.append((k, b["metadata"]["name"]))
    )
    asyncio.run(drive(script, informer))
    assert seen == [("ADDED", "a"), ("ADDED", "b"), ("MODIFIED", "a"), ("DELETED", "b")]
    (_, first), (_, second), (_, watch), (_, resumed) = script.calls
    assert first["labelSelector"] == second["labelSelector"] == "herdsman.dev/shard=1"
    assert second["continue"] == "next"
    assert watch["resourceVersion"] == "10"
    assert watch["watch"] == "true"
    # The stream ended: resumed from the last version it showed (the deletion's), no new list.
    assert resumed["resourceVersion"] == "16"
    assert informer.known == {("shop", "a")}  # keys only: the objects are the consumer's


def test_an_expired_watch_lists_again_and_what_the_new_list_lacks_is_deleted() -> None:
    seen: list[tuple[str, str]] = []
    script = Script(
        lists=[
            (200, page([body("a", 5), body("b", 6)], 9)),
            (200, page([body("b", 20), body("c", 21)], 22)),
        ],
        watches=[[event("ERROR", {"code": 410, "message": "too old"})]],
    )
    informer = Informer(script, PATH, "x", lambda k, b: seen.append((k, b["metadata"]["name"])))
    asyncio.run(drive(script, informer))
    assert seen == [
        ("ADDED", "a"),
        ("ADDED", "b"),
        ("MODIFIED", "b"),
        ("ADDED", "c"),
        ("DELETED", "a"),  # gone while the watch was down: never a ghost
    ]
    assert script.calls[-1][1]["resourceVersion"] == "22"


def test_a_broken_stream_or_a_refused_list_is_retried_and_a_consumer_s_bug_ends_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(informer_module, "BACKOFF", (0.0,))
    seen: list[str] = []

    def consumer(kind: str, obj: dict[str, Any]) -> None:
        if obj["metadata"]["name"] == "bad":
            raise RuntimeError("a bug in the consumer")
        seen.append(obj["metadata"]["name"])

    script = Script(
        lists=[(503, {}), (200, page([body("bad", 1), body("a", 2)], 3))],
        watches=[
            ConnectionError("reset by peer"),
            RuntimeError("anything else"),
            [event("ADDED", body("b", 4))],
        ],
    )
    informer = Informer(script, PATH, "x", consumer)
    asyncio.run(drive(script, informer))
    assert seen == ["a", "b"]
    kinds = [kind for kind, _ in script.calls]
    assert kinds == ["list", "list", "watch", "watch", "watch", "watch"]
    assert script.calls[3][1]["resourceVersion"] == "3"  # resumed, not re-listed
    assert script.calls[4][1]["resourceVersion"] == "3"
    assert script.calls[5][1]["resourceVersion"] == "4"


def test_each_watch_s_end_is_told_why_and_a_cut_one_is_told_apart_from_a_timeout(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The API server cuts a watcher it cannot deliver to fast enough; the stream just ends,
    exactly as at its timeout. Only the time it lasted tells the two apart."""
    monkeypatch.setattr(informer_module, "BACKOFF", (0.0,))

    def run(server_timeout: int) -> list[str]:
        monkeypatch.setattr(informer_module, "SERVER_TIMEOUT", server_timeout)
        ends: list[str] = []
        script = Script(
            lists=[(200, page([body("a", 1)], 2)), (200, page([body("a", 1)], 5))],
            watches=[
                [event("ADDED", body("b", 3))],
                ConnectionError("reset by peer"),
                [event("ERROR", {"code": 410, "message": "too old"})],
            ],
        )
        informer = Informer(script, PATH, "x", lambda k, b: None, ended=ends.append)
        asyncio.run(drive(script, informer))
        return ends

    # Ended at once, long before the 300 s asked for: cut.
    assert run(300) == ["early", "failed", "expired"]
    # A request that lasted its whole (here: zero-length) timeout is the normal end.
    assert run(int(informer_module.EARLY)) == ["timeout", "failed", "expired"]


# --- the two views ---------------------------------------------------------------------------


class Told:
    def __init__(self) -> None:
        self.observed: list[tuple[str, bool]] = []
        self.forgotten: list[str] = []

    def observe(self, namespace: str, name: str, obj: Any) -> None:
        self.observed.append((name, obj is not None))

    def forget(self, namespace: str, name: str) -> None:
        self.forgotten.append(name)


class Idle:
    """A transport whose watches are never read (the views' own logic is under test)."""

    closed = False

    async def close(self) -> None:
        self.closed = True


def views(told: Told, namespaces: tuple[str, ...] = ()) -> RolloutViews:
    return RolloutViews(Idle(), told.observe, told.forget, namespaces=namespaces)  # type: ignore[arg-type]


@pytest.mark.parametrize("order", ["joins first", "leaves first"])
def test_a_label_moving_a_rollout_between_views_never_tells_the_runtime_it_is_gone_while_seen(
    order: str,
) -> None:
    told = Told()
    v = views(told)
    v.unlabelled("shop", "a", body("a", 1))
    joins = ("shard-2", "ADDED", body("a", 2, **{LABEL_SHARD: "2"}))
    leaves = ("unlabelled", "DELETED", body("a", 1))
    for source, kind, obj in [joins, leaves] if order == "joins first" else [leaves, joins]:
        v._event(source, kind, obj)
    assert v.holds("shop", "a")
    if order == "joins first":
        assert told.observed == [("a", True), ("a", True)]
    else:
        # Shown by neither for a moment: the runtime drops its copy (a pass would GET it) and
        # gets it back from the shard's view.
        assert told.observed == [("a", True), ("a", False), ("a", True)]


def test_giving_up_a_shard_forgets_its_rollouts_but_not_those_another_view_shows() -> None:
    told = Told()
    v = views(told)

    async def scenario() -> None:
        v.start(3)
        (informer,) = v._informers[3]
        assert informer.selector == shard_selector(3) == f"{LABEL_SHARD}=3"
        informer.known |= {("shop", "a"), ("shop", "b")}
        v._event("shard-3", "ADDED", body("a", 1))
        v._event("shard-3", "ADDED", body("b", 1))
        v.unlabelled("shop", "b", body("b", 1))  # not yet: the streams disagree for a moment
        v.stop(3)
        await v.close()

    asyncio.run(scenario())
    assert v.transport.closed  # type: ignore[attr-defined]
    assert told.forgotten == ["a"]
    assert not v.holds("shop", "a")
    assert v.holds("shop", "b")


def test_views_of_namespace_patterns_keep_only_matching_namespaces() -> None:
    told = Told()
    v = views(told, namespaces=("shop-*",))
    v._event("shard-0", "ADDED", body("a", 1, namespace="shop-eu"))
    v._event("shard-0", "ADDED", body("b", 1, namespace="payments"))
    assert told.observed == [("a", True)]


def test_kopf_sees_exactly_the_rollouts_no_shard_s_view_selects() -> None:
    assert unlabelled_selector(3) == f"{LABEL_SHARD} notin (0,1,2)"


# --- the runtime's side ----------------------------------------------------------------------


class PatchingKube:
    def __init__(self) -> None:
        self.patches: list[tuple[str, Any]] = []

    async def patch(self, path: str, body: Any, **_: Any) -> dict[str, Any]:
        self.patches.append((path, body))
        return {}


def owning(shards: int, held: set[int]) -> Shards:
    from herdsman.sharding import Held

    made = Shards(store=None, identity="me", shards=shards)  # type: ignore[arg-type]
    for shard in held:
        made.held[shard] = Held("1", float("inf"))
    return made


def test_a_rollout_no_view_of_this_replica_shows_is_let_go_by_its_next_pass() -> None:
    name = next(n for n in (f"r{i}" for i in range(100)) if shard_of("shop", n, 4) == 1)
    runtime = Runtime(kube=PatchingKube(), applier=None, cache=Cache(), shards=owning(4, {0}))  # type: ignore[arg-type]
    runtime.observed("shop", name, body(name, 1))
    assert asyncio.run(runtime._handle(("shop", name))) != DONE  # shown: waits for its owner
    runtime.observed("shop", name, None)  # labelled into another replica's shard
    assert asyncio.run(runtime._handle(("shop", name))) == DONE
    assert ("shop", name) not in runtime._known


def test_a_rollout_labelled_for_a_held_shard_but_hashed_elsewhere_is_relabelled_by_its_holder() -> (
    None
):
    name = next(n for n in (f"r{i}" for i in range(100)) if shard_of("shop", n, 4) == 1)
    kube = PatchingKube()
    runtime = Runtime(kube=kube, applier=None, cache=Cache(), shards=owning(4, {3}))  # type: ignore[arg-type]
    runtime.observed("shop", name, body(name, 1, **{LABEL_SHARD: "3"}))  # from 3 shards to 4
    asyncio.run(runtime._handle(("shop", name)))
    assert kube.patches == [
        (f"{PATH}/{name}", {"metadata": {"labels": {LABEL_SHARD: "1"}}}),
    ]
    # Labelled right already, or for a shard this replica does not hold: no write.
    kube.patches.clear()
    runtime.observed("shop", name, body(name, 2, **{LABEL_SHARD: "2"}))
    asyncio.run(runtime._handle(("shop", name)))
    assert kube.patches == []


def test_a_forgotten_rollout_leaves_no_timer_cache_or_key() -> None:
    runtime = Runtime(kube=PatchingKube(), applier=None, cache=Cache(), shards=owning(4, {0}))  # type: ignore[arg-type]
    runtime.observed("shop", "a", body("a", 1))
    runtime.queue.add_after(("shop", "a"), 30)
    runtime.forget("shop", "a")
    assert runtime.queue.timers() == 0
    assert not runtime.cache.has_rollout("shop", "a")  # type: ignore[union-attr]
    assert ("shop", "a") not in runtime._known
