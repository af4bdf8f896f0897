"""No object waits for us to be deleted: Rollouts and Experiments have no daemon at all (their
workqueues run on watch events), and the one daemon, `acting` on the peering object, is
registered without Kopf's finalizer.

The e2e proof is tests/e2e/test_foundation.py (no finalizer on a live Rollout); this one fails
at once, without a cluster, when a Kopf upgrade changes what `drop_daemon_finalizer` relies on.
"""

from __future__ import annotations

from typing import Any

import kopf
import pytest

from herdsman import handlers

pytestmark = pytest.mark.unit


def _daemons(registry: kopf.OperatorRegistry) -> dict[str, Any]:
    return {h.id: h for h in registry._spawning.get_all_handlers()}


def test_no_daemon_and_no_finalizer_on_rollouts_or_experiments() -> None:
    registry = kopf.get_default_registry()
    assert _daemons(registry) == {}
    watched = {h.selector.any_name for h in registry._watching.get_all_handlers()}
    assert {"rollouts", "experiments"} <= watched


def test_the_acting_daemon_watches_only_our_peering_object_without_a_finalizer() -> None:
    registry = kopf.OperatorRegistry()
    handlers.register_acting(registry, "herdsman", clusterwide=True)
    acting = _daemons(registry)[handlers.ACTING]
    assert acting.requires_finalizer is False
    assert acting.selector.any_name == "clusterkopfpeerings"
    assert acting.when is not None
    assert acting.when(name="herdsman")
    assert not acting.when(name="someone-else")
    namespaced = kopf.OperatorRegistry()
    handlers.register_acting(namespaced, "herdsman", clusterwide=False)
    assert _daemons(namespaced)[handlers.ACTING].selector.any_name == "kopfpeerings"


def test_kopf_still_adds_one_by_default() -> None:
    """What the function works around is still there: a plain daemon requires a finalizer."""
    registry = kopf.OperatorRegistry()

    @kopf.daemon("herdsman.dev", "v1alpha1", "rollouts", id="plain", registry=registry)
    async def plain(**_: Any) -> None:
        return None

    assert _daemons(registry)["plain"].requires_finalizer is True
    handlers.drop_daemon_finalizer(registry, ["plain"])
    assert _daemons(registry)["plain"].requires_finalizer is False


def test_an_unknown_daemon_is_refused() -> None:
    with pytest.raises(RuntimeError, match="not registered"):
        handlers.drop_daemon_finalizer(kopf.OperatorRegistry(), ["rollout"])
