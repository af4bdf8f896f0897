"""The watch-fed cache: the watch's view, with the operator's own newer writes laid over it."""

from __future__ import annotations

import json
from typing import Any

import pytest

from herdsman.cluster.cache import (
    LAST_APPLIED,
    OVERLAY_SECONDS,
    Cache,
    pack_group,
    slim,
    slim_group,
)
from herdsman.naming import LABEL_ROLLOUT

pytestmark = pytest.mark.unit


def rs(name: str, rv: int, replicas: int, rollout: str = "checkout") -> dict[str, Any]:
    return {
        "kind": "ReplicaSet",
        "metadata": {
            "name": name,
            "namespace": "shop",
            "resourceVersion": str(rv),
            "labels": {LABEL_ROLLOUT: rollout},
            "managedFields": [{"manager": "kubectl"}],
            "annotations": {LAST_APPLIED: "{...}", "keep": "me"},
        },
        "spec": {"replicas": replicas},
    }


class Clock:
    now = 0.0

    def __call__(self) -> float:
        return self.now


def watched(*bodies: dict[str, Any]) -> list[str]:
    """What the server-group index holds for these bodies (handlers.server_groups)."""
    return [pack_group(b) for b in bodies]


def cache_with(index: dict[Any, list[str]], clock: Clock) -> Cache:
    cache = Cache(clock=clock)
    cache.bind("ReplicaSet", index)
    return cache


def sizes(items: list[dict[str, Any]]) -> dict[str, int]:
    return {i["metadata"]["name"]: i["spec"]["replicas"] for i in items}


def test_slim_drops_managed_fields_and_last_applied_only() -> None:
    body = slim(rs("a", 1, 2))
    assert "managedFields" not in body["metadata"]
    assert body["metadata"]["annotations"] == {"keep": "me"}
    assert body["spec"] == {"replicas": 2}


def test_a_server_group_is_kept_without_its_pod_spec_and_the_watch_s_body_is_untouched() -> None:
    body = rs("a", 1, 2)
    template = {
        "metadata": {"labels": {"app": "checkout"}, "annotations": {"role": "canary"}},
        "spec": {"containers": [{"name": "app", "image": "app:v1", "env": [{"name": "X"}]}]},
    }
    body["spec"]["template"] = template
    kept = slim_group(body)
    assert kept["spec"] == {"replicas": 2, "template": {"metadata": template["metadata"]}}
    assert body["spec"]["template"]["spec"] == template["spec"]  # the input is not changed
    assert slim_group(rs("b", 1, 0))["spec"] == {"replicas": 0}  # no template: nothing to trim
    cache = cache_with({}, Clock())
    cache.note(body)  # our own write's response is kept the same way
    (written,) = cache.owned("ReplicaSet", "shop", "checkout")
    assert "spec" not in written["spec"]["template"]


def test_a_write_shows_until_the_watch_delivers_it_or_newer() -> None:
    clock = Clock()
    index: dict[Any, list[str]] = {("shop", "checkout"): watched(rs("a", 5, 2))}
    cache = cache_with(index, clock)
    assert not cache.ready("AnalysisRun", "shop", "checkout")
    cache.note(rs("a", 7, 3))  # our scale-up, the watch still at 5
    cache.note(rs("b", 8, 1))  # our create, not watched yet
    assert sizes(cache.owned("ReplicaSet", "shop", "checkout")) == {"a": 3, "b": 1}
    index[("shop", "checkout")] = watched(rs("a", 9, 4), rs("b", 8, 1))  # another writer, later
    assert sizes(cache.owned("ReplicaSet", "shop", "checkout")) == {"a": 4, "b": 1}
    assert cache._written == {}


def test_deleted_and_old_writes_never_come_back() -> None:
    clock = Clock()
    index: dict[Any, list[str]] = {}
    cache = cache_with(index, clock)
    cache.note(rs("a", 7, 3))
    cache.note(rs("b", 8, 1))
    cache.note(rs("c", 8, 1, rollout="other"))
    cache.note({"kind": "Rollout", "metadata": {"name": "x"}})  # not cached here
    cache.forget("ReplicaSet", "shop", "checkout", "a")
    assert sizes(cache.owned("ReplicaSet", "shop", "checkout")) == {"b": 1}
    clock.now = OVERLAY_SECONDS + 1
    assert cache.owned("ReplicaSet", "shop", "checkout") == []
    assert sizes(cache.owned("ReplicaSet", "shop", "other")) == {}


def rollout_body(rv: int, phase: str) -> dict[str, Any]:
    return {
        "kind": "Rollout",
        "metadata": {"name": "checkout", "namespace": "shop", "resourceVersion": str(rv)},
        "status": {"phase": phase},
    }


def test_a_rollout_reads_from_the_watch_unless_our_write_is_newer_or_a_race_was_lost() -> None:
    cache = Cache(clock=Clock())
    assert cache.rollout("shop", "checkout") is None  # not bound: the caller GETs
    live = rollout_body(5, "Progressing")
    cache.put_rollout("shop", "checkout", live)
    read = cache.rollout("shop", "checkout")
    assert read == live
    assert read is not live
    cache.note(rollout_body(7, "Paused"))  # our status write; the watch still at 5
    assert (cache.rollout("shop", "checkout") or {})["status"]["phase"] == "Paused"
    cache.put_rollout("shop", "checkout", rollout_body(9, "Healthy"))  # the watch moved past it
    assert (cache.rollout("shop", "checkout") or {})["status"]["phase"] == "Healthy"
    cache.refresh("shop", "checkout")  # a 409: the next read is the API server's
    assert cache.rollout("shop", "checkout") is None
    assert cache.rollout("shop", "checkout") is not None
    cache.drop_rollout("shop", "checkout")
    cache.note(rollout_body(11, "Degraded"))  # deleted: nothing kept for it
    assert cache.rollout("shop", "checkout") is None
    assert cache.overlays() == 0


def test_a_rollout_read_is_a_copy_the_pass_may_change() -> None:
    live = {
        "metadata": {"name": "r", "namespace": "ns", "resourceVersion": "5"},
        "spec": {"steps": [{"setWeight": 5}], "template": {"metadata": {"labels": {"a": "b"}}}},
    }
    cache = Cache()
    cache.put_rollout("ns", "r", live)
    body = cache.rollout("ns", "r")
    assert body == live
    assert body is not None
    body["spec"]["steps"][0]["setWeight"] = 50
    body["spec"]["template"]["metadata"]["labels"]["a"] = "changed"
    body["metadata"]["name"] = "other"
    assert live["spec"]["steps"] == [{"setWeight": 5}]
    assert live["spec"]["template"]["metadata"]["labels"] == {"a": "b"}
    assert live["metadata"]["name"] == "r"


def test_a_write_the_watch_caught_up_with_is_let_go_at_once() -> None:
    """A settled rollout is read again only at its resync, minutes later: the copy of its last
    write must not be held until then."""
    clock = Clock()
    cache = cache_with({("shop", "checkout"): watched(rs("a", 5, 2))}, clock)
    cache.put_rollout("shop", "checkout", rollout_body(5, "Progressing"))
    cache.note(rollout_body(7, "Healthy"))
    cache.note(rs("a", 8, 3))
    assert cache.overlays() == 2
    cache.put_rollout("shop", "checkout", rollout_body(6, "Progressing"))  # older than our write
    cache.seen("ReplicaSet", "shop", "checkout", rs("a", 7, 2))
    assert cache.overlays() == 2
    cache.put_rollout("shop", "checkout", rollout_body(7, "Healthy"))
    cache.seen("ReplicaSet", "shop", "checkout", rs("a", 8, 3))
    assert cache.overlays() == 0
    cache.seen("ReplicaSet", "shop", "other", rs("b", 9, 1))  # nothing held for it: no error
    assert sizes(cache.owned("ReplicaSet", "shop", "checkout")) == {"a": 2}


def test_server_group_reads_are_copies_and_what_is_kept_is_the_slim_body() -> None:
    body = rs("a", 5, 2)
    (kept,) = watched(body)
    assert json.loads(kept) == slim_group(body)
    cache = cache_with({("shop", "checkout"): [kept]}, Clock())
    (read,) = cache.owned("ReplicaSet", "shop", "checkout")
    read["spec"]["replicas"] = 9
    read["metadata"]["labels"].clear()
    assert cache.owned("ReplicaSet", "shop", "checkout") == [slim_group(body)]
    cache.note(rs("a", 6, 3))  # a written overlay is handed out as a copy too
    (written,) = cache.owned("ReplicaSet", "shop", "checkout")
    written["spec"]["replicas"] = 0
    assert sizes(cache.owned("ReplicaSet", "shop", "checkout")) == {"a": 3}


def test_a_write_response_the_watch_already_passed_is_not_kept() -> None:
    """The watch can deliver a newer version before our write's response comes back: holding
    the response then would only be an older copy to decode and throw away on the next read."""
    cache = Cache(clock=Clock())
    cache.put_rollout("shop", "checkout", rollout_body(9, "Healthy"))
    cache.note(rollout_body(8, "Paused"))  # our write, answered after the watch moved on
    assert cache.overlays() == 0
    assert (cache.rollout("shop", "checkout") or {})["status"]["phase"] == "Healthy"
    cache.note(rollout_body(10, "Degraded"))  # newer than the watch: kept and read
    assert cache.overlays() == 1
    assert (cache.rollout("shop", "checkout") or {})["status"]["phase"] == "Degraded"


def test_only_a_settled_write_s_own_version_coming_back_is_told_as_nothing_new() -> None:
    cache = Cache(clock=Clock())
    assert cache.put_rollout("shop", "checkout", rollout_body(5, "Progressing")) is False
    assert not cache.echo_pending("shop", "checkout")
    cache.settle("shop", "checkout")  # no write of ours outstanding: nothing to hold
    assert cache.put_rollout("shop", "checkout", rollout_body(5, "Progressing")) is False

    cache.note(rollout_body(7, "Paused"))  # our status write, from a settled pass
    assert cache.echo_pending("shop", "checkout")
    cache.settle("shop", "checkout")
    assert cache.put_rollout("shop", "checkout", rollout_body(6, "Progressing")) is False  # older
    assert cache.put_rollout("shop", "checkout", rollout_body(7, "Paused")) is True  # its echo
    assert not cache.echo_pending("shop", "checkout")
    assert cache.put_rollout("shop", "checkout", rollout_body(7, "Paused")) is False  # once only

    cache.note(rollout_body(9, "Paused"))
    cache.settle("shop", "checkout")
    # Someone else wrote after us and a re-list skipped our version: theirs is news.
    assert cache.put_rollout("shop", "checkout", rollout_body(10, "Degraded")) is False
    assert cache.put_rollout("shop", "checkout", rollout_body(9, "Paused")) is False

    cache.note(rollout_body(12, "Paused"))  # a write whose pass was not settled
    assert cache.put_rollout("shop", "checkout", rollout_body(12, "Paused")) is False

    cache.note(rollout_body(14, "Paused"))
    cache.settle("shop", "checkout")
    cache.drop_rollout("shop", "checkout")  # deleted, or its shard let go: nothing held
    assert cache.put_rollout("shop", "checkout", rollout_body(14, "Paused")) is False
