"""Kopf's settings as herdsman's startup handler leaves them, where a default would cost us.

The memory figure behind the queueing setting comes from `make bench-scale` (README); this
keeps a later edit of `handlers.configure` from quietly restoring Kopf's default.
"""

from __future__ import annotations

import asyncio

import kopf
import pytest

pytestmark = pytest.mark.unit


def configured() -> kopf.OperatorSettings:
    from herdsman import handlers

    settings = kopf.OperatorSettings()
    memo = kopf.Memo(peering={"name": "p", "priority": 0, "standalone": True})
    asyncio.run(handlers.configure(settings=settings, memo=memo))
    return settings


def test_a_watched_object_s_worker_goes_soon_after_its_last_event() -> None:
    default = kopf.OperatorSettings().queueing.idle_timeout
    settings = configured()
    # Kopf's 5 s kept a task per Rollout and ReplicaSet alive through a burst (+24 MB settled
    # at N=1,000); our handlers queue a pass and return, so a worker has nothing to wait for.
    assert settings.queueing.idle_timeout <= 0.5 < default


def test_kopf_posts_no_events_of_its_own() -> None:
    assert configured().posting.enabled is False


def test_sharded_kopf_watches_only_the_rollouts_no_shard_s_own_watch_selects() -> None:
    from herdsman import handlers

    class Shards:
        shards = 4

        async def run(self) -> None:
            return None

    settings = kopf.OperatorSettings()
    memo = kopf.Memo(peering={"name": "p", "priority": 0, "standalone": True}, shards=Shards())

    async def configure() -> None:
        await handlers.configure(settings=settings, memo=memo)
        await memo.shard_task

    asyncio.run(configure())
    selectors = {key.any_name: value for key, value in settings.watching.label_selectors.items()}
    assert selectors["rollouts"] == "herdsman.dev/shard notin (0,1,2,3)"
    # A Rollout's groups and runs come through the replica's own views: Kopf keeps only the
    # Experiments' (which carry no Rollout label).
    assert (
        selectors["replicasets"] == "app.kubernetes.io/managed-by=herdsman,herdsman.dev/experiment"
    )
    assert selectors["analysisruns"] == "herdsman.dev/experiment"
    # Unsharded, Kopf watches every Rollout.
    assert "rollouts" not in {key.any_name for key in configured().watching.label_selectors}


def test_kopf_is_sent_only_our_own_replicasets_and_ours_carry_the_label() -> None:
    """The watch selects on the managed-by label server-side, so every ReplicaSet the operator
    creates must carry it (an Experiment's and an imported one's do too: their e2e tests would
    stall without it)."""
    from sim import Sim, manifest

    from herdsman.cluster.apply import replica_set
    from herdsman.engine.world import NewGroup
    from herdsman.naming import LABEL_MANAGED, MANAGED_BY

    selectors = {
        key.any_name: value for key, value in configured().watching.label_selectors.items()
    }
    assert selectors["replicasets"] == f"{LABEL_MANAGED}={MANAGED_BY}"
    rollout = Sim.of(manifest()).rollout
    group = NewGroup(
        name="checkout-v001",
        revision=1,
        pod_hash="abc",
        kind="release",
        replicas=1,
        template=rollout.spec.pod_template,
    )
    body = replica_set(rollout, group, rollout.spec.pod_template)
    assert body["metadata"]["labels"][LABEL_MANAGED] == MANAGED_BY
