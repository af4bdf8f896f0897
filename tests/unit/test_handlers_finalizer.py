"""The daemons are registered without Kopf's finalizer (deleting a Rollout never waits for us).

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


def test_rollout_and_experiment_daemons_need_no_finalizer() -> None:
    daemons = _daemons(kopf.get_default_registry())
    for handler_id in handlers.NO_FINALIZER:
        assert daemons[handler_id].requires_finalizer is False


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
