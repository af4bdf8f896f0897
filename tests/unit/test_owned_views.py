"""Sharded: a replica's own views of the server groups and AnalysisRuns, beside its Rollouts'.

What must hold (shard_watch.py): a group or run is created labelled with its Rollout's shard and
the shard count; each replica watches its shards' labels and, for the rest (no label, another
count), one unlabelled view; a shard's Rollouts are watched only once its groups and runs are
listed; the cache answers from these views only when they are complete for the Rollout; a
shard given up lets go of what it alone showed. The e2e (test_sharding) checks the same against
the real API server, through each replica's `herdsman_server_groups_cached` gauge.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncGenerator
from typing import Any

import pytest

from herdsman.cluster.apply import Applier
from herdsman.cluster.cache import Cache, pack
from herdsman.cluster.kube import ANALYSIS_RUNS, REPLICA_SETS, ROLLOUTS
from herdsman.cluster.owned_index import OwnedIndex
from herdsman.naming import LABEL_ROLLOUT
from herdsman.reconcile import Runtime
from herdsman.shard_watch import (
    OwnedKind,
    RolloutViews,
    owned_shard_selector,
    owned_unlabelled_selector,
)
from herdsman.sharding import LABEL_OWNER_SHARD, shard_of

pytestmark = pytest.mark.unit


def obj(name: str, rollout: str, version: int = 1, namespace: str = "shop") -> dict[str, Any]:
    return {
        "metadata": {
            "namespace": namespace,
            "name": name,
            "resourceVersion": str(version),
            "labels": {LABEL_ROLLOUT: rollout},
        }
    }


def names(index: OwnedIndex, rollout: str) -> set[str]:
    return {json.loads(text)["metadata"]["name"] for text in index.get(("shop", rollout), [])}


def test_the_index_keeps_an_object_while_any_view_shows_it_and_follows_its_rollout_label() -> None:
    index = OwnedIndex(pack)
    assert index.event("shard-1", "ADDED", obj("a-v001", "a"))
    assert index.event("unlabelled", "MODIFIED", obj("a-v001", "a", 2))
    assert names(index, "a") == {"a-v001"}
    assert not index.event("shard-1", "DELETED", obj("a-v001", "a"))  # the other still shows it
    assert names(index, "a") == {"a-v001"}
    assert index.event("unlabelled", "MODIFIED", obj("a-v001", "b", 3))  # relabelled by hand
    assert names(index, "a") == set()
    assert names(index, "b") == {"a-v001"}
    assert index.drop("unlabelled", [("shop", "a-v001")]) == 1
    assert len(index) == 0
    assert index.group_of(("shop", "a-v001")) is None
    assert not index.event("shard-1", "DELETED", obj("never-seen", "a"))


def test_selectors_split_by_shard_and_count_and_the_unlabelled_view_takes_every_other() -> None:
    ours = f"app.kubernetes.io/managed-by=herdsman,{LABEL_ROLLOUT}"
    assert owned_shard_selector(2, 4) == f"{ours},{LABEL_OWNER_SHARD}=2-of-4"
    assert owned_unlabelled_selector(3) == (
        f"{ours},{LABEL_OWNER_SHARD} notin (0-of-3,1-of-3,2-of-3)"
    )


class Gated:
    """The API server, for views: every list is empty, but the ReplicaSets' lists wait for
    `release`; watches stay quiet until cancelled."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.listed: list[tuple[str, str]] = []
        self.closed = False

    async def call(
        self,
        method: str,
        path: str,
        query: dict[str, str] | None,
        body: Any,
        content_type: str,
        seconds: float,
    ) -> tuple[int, str, bytes, dict[str, str]]:
        if "replicasets" in path:
            await self.release.wait()
        self.listed.append((path, (query or {}).get("labelSelector", "")))
        items = [obj("a-v001", "a")] if "replicasets" in path else []
        page = {"items": items, "metadata": {"resourceVersion": "5"}}
        return 200, "", json.dumps(page).encode(), {}

    async def lines(
        self, path: str, query: dict[str, str], read_seconds: float
    ) -> AsyncGenerator[bytes, None]:
        await asyncio.Event().wait()
        yield b""

    async def close(self) -> None:
        self.closed = True


def test_a_shard_s_rollouts_are_watched_only_once_its_groups_and_runs_are_listed() -> None:
    transport = Gated()
    changed: list[tuple[str, str, str]] = []
    indexes = {"ReplicaSet": OwnedIndex(pack), "AnalysisRun": OwnedIndex(pack)}

    def note(kind: str, event: str, body: Any) -> None:
        changed.append((kind, event, body["metadata"]["name"]))

    views = RolloutViews(
        transport,  # type: ignore[arg-type]
        lambda *_: None,
        lambda *_: None,
        namespaces=["shop"],
        shards=4,
        owned=[
            OwnedKind("ReplicaSet", REPLICA_SETS, indexes["ReplicaSet"], note),
            OwnedKind("AnalysisRun", ANALYSIS_RUNS, indexes["AnalysisRun"], note),
        ],
    )
    mine = next(n for n in (f"r{i}" for i in range(100)) if shard_of("shop", n, 4) == 2)
    other = next(n for n in (f"r{i}" for i in range(100)) if shard_of("shop", n, 4) == 1)

    async def scenario() -> None:
        views.start_owned()
        views.start(2)
        for _ in range(20):
            await asyncio.sleep(0)
        rollouts = ROLLOUTS.url("shop")
        assert [p for p, _ in transport.listed] == [ANALYSIS_RUNS.url("shop")] * 2
        assert not views.ready("ReplicaSet", "shop", mine)
        assert views.ready("AnalysisRun", "shop", mine)  # per kind: the runs are listed
        transport.release.set()
        for _ in range(20):
            await asyncio.sleep(0)
        assert (rollouts, "herdsman.dev/shard=2") in transport.listed
        assert (REPLICA_SETS.url("shop"), owned_shard_selector(2, 4)) in transport.listed
        assert (REPLICA_SETS.url("shop"), owned_unlabelled_selector(4)) in transport.listed
        assert views.ready("ReplicaSet", "shop", mine)
        assert views.ready("ReplicaSet", "shop", other)  # not held: only the unlabelled view
        assert names(indexes["ReplicaSet"], "a") == {"a-v001"}  # shown by both views
        views.stop(2)
        assert names(indexes["ReplicaSet"], "a") == {"a-v001"}  # the unlabelled view still does
        await views.close()

    asyncio.run(scenario())
    assert transport.closed
    assert names(indexes["ReplicaSet"], "a") == set()
    # Each view's ADDED is told (the second refreshes the same object); the stops tell nothing.
    assert changed == [("ReplicaSet", "ADDED", "a-v001")] * 2


def test_a_re_list_s_deletion_reaches_the_cache_and_wakes_the_rollout_it_was_held_for() -> None:
    cache = Cache()
    runtime = Runtime(kube=None, applier=None, cache=cache)  # type: ignore[arg-type]
    index = OwnedIndex(pack)
    cache.bind("ReplicaSet", index)
    views = RolloutViews(
        None,  # type: ignore[arg-type]
        runtime.observed,
        runtime.forget,
        namespaces=["shop-*"],
        shards=2,
        owned=[OwnedKind("ReplicaSet", REPLICA_SETS, index, runtime.owned_changed)],
    )
    woken: list[tuple[str | None, str | None]] = []
    runtime.wake = lambda namespace, name: woken.append((namespace, name))  # type: ignore[method-assign]
    cache.note({"kind": "ReplicaSet", **obj("a-v001", "a", 9, namespace="shop-eu")})
    views._owned_event(views.owned[0], "shard-0", "ADDED", obj("a-v001", "a", namespace="shop-eu"))
    views._owned_event(views.owned[0], "shard-0", "ADDED", obj("b-v001", "b", namespace="other"))
    assert cache.count("ReplicaSet") == 1  # another namespace's is not kept
    assert [
        g["metadata"]["resourceVersion"] for g in cache.owned("ReplicaSet", "shop-eu", "a")
    ] == ["9"]  # our own newer write shows over the watch's older version
    gone = {"metadata": {"namespace": "shop-eu", "name": "a-v001"}}  # as a re-list sends it
    views._owned_event(views.owned[0], "shard-0", "DELETED", gone)
    assert cache.owned("ReplicaSet", "shop-eu", "a") == []  # no overlay revives it
    assert woken == [("shop-eu", "a"), ("shop-eu", "a")]  # its ADDED, then its deletion


class Creating:
    def __init__(self) -> None:
        self.created: list[tuple[str, dict[str, Any]]] = []

    async def create(self, path: str, body: dict[str, Any], **_: Any) -> dict[str, Any]:
        self.created.append((path, body))
        return body


def test_groups_and_runs_are_created_labelled_with_their_rollout_s_shard() -> None:
    from sim import Sim, manifest

    from herdsman.engine.world import NewGroup

    rollout = Sim.of(manifest()).rollout
    kube = Creating()

    async def build_run(*_: Any) -> dict[str, Any]:
        return {"metadata": {"name": "run", "labels": {LABEL_ROLLOUT: "checkout"}}}

    applier = Applier(
        kube,  # type: ignore[arg-type]
        build_run=build_run,  # type: ignore[arg-type]
        events=None,  # type: ignore[arg-type]
        shard_labels=lambda r: {LABEL_OWNER_SHARD: f"{r.metadata.name}-of-x"},
    )
    group = NewGroup(
        name="checkout-v001",
        revision=1,
        pod_hash="abc",
        kind="release",
        replicas=1,
        template=rollout.spec.pod_template,
    )
    asyncio.run(applier._create_group(rollout, group, None, None))  # type: ignore[arg-type]
    asyncio.run(applier._create_run(rollout, None, None, None))  # type: ignore[arg-type]
    (_, rs), (_, run) = kube.created
    assert rs["metadata"]["labels"][LABEL_OWNER_SHARD] == "checkout-of-x"
    assert run["metadata"]["labels"] == {
        LABEL_ROLLOUT: "checkout",
        LABEL_OWNER_SHARD: "checkout-of-x",
    }
    # The pods are not labelled with it: only the group's own metadata.
    assert LABEL_OWNER_SHARD not in rs["spec"]["template"]["metadata"]["labels"]
