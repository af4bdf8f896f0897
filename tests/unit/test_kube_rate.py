"""The client-side rate limit on Kubernetes API calls: it paces, and it never fails a call."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from kubernetes import client

from herdsman.__main__ import parser
from herdsman.cluster import kube as kube_mod
from herdsman.cluster.budget import AccessPolicy

pytestmark = pytest.mark.unit


def test_no_qps_means_no_limiter_and_bad_numbers_are_refused() -> None:
    assert kube_mod.RateLimit().limiter() is None
    assert kube_mod.RateLimit(0, 100).limiter() is None
    limiter = kube_mod.RateLimit(50, 10).limiter()
    assert limiter is not None
    assert limiter.max_rate == 10  # the burst
    assert limiter.max_rate / limiter.time_period == pytest.approx(50)  # the pace
    one = kube_mod.RateLimit(50, 0).limiter()
    assert one is not None
    assert one.max_rate == 1
    with pytest.raises(ValueError, match="qps and burst"):
        kube_mod.RateLimit(-1, 10)


def test_the_flags_default_to_a_limit_and_refuse_negatives(
    capsys: pytest.CaptureFixture[str],
) -> None:
    args = parser().parse_args(["run"])
    assert (args.kube_qps, args.kube_burst) == (200.0, 400)
    args = parser().parse_args(["run", "--kube-qps", "0", "--kube-burst", "0"])
    assert (args.kube_qps, args.kube_burst) == (0.0, 0)
    for flag, value in (("--kube-qps", "-5"), ("--kube-qps", "nan"), ("--kube-burst", "-1")):
        with pytest.raises(SystemExit):
            parser().parse_args(["run", flag, value])
        assert "must be" in capsys.readouterr().err


def test_requests_beyond_the_burst_are_paced_and_keep_their_whole_deadline(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Three go at once; the other five at 10 per second. Each call's deadline (0.2 s) is far
    shorter than the 0.5 s the last one waits: the wait is ours, not the server's, so it is not
    taken from the deadline, and every call succeeds."""
    throttled: list[float] = []
    policy = AccessPolicy(reconcile_budget=0.2, call_timeout=0.2, attempts=1)
    kube = kube_mod.Kube(
        client.ApiClient(client.Configuration()),
        policy,
        rate=kube_mod.RateLimit(qps=10, burst=3),
        on_throttle=throttled.append,
    )
    sent: list[float] = []

    async def call(*_: Any) -> tuple[int, str, bytes, dict[str, str]]:
        sent.append(time.monotonic())
        return 200, "OK", b'{"kind": "Pod"}', {}

    monkeypatch.setattr(kube.transport, "call", call)

    async def eight() -> list[Any]:
        calls = [kube.request("GET", "/x", deadline=policy.reconcile_deadline()) for _ in range(8)]
        return await asyncio.gather(*calls)

    started = time.monotonic()
    assert asyncio.run(eight()) == [{"kind": "Pod"}] * 8
    offsets = sorted(t - started for t in sent)
    assert offsets[2] < 0.08, offsets  # the burst went at once
    assert 0.4 <= offsets[-1] < 1.0, offsets  # five more at 10/s: the last about 0.5 s later
    assert len(throttled) >= 4, throttled  # every paced call said how long it waited
    assert 1.0 <= sum(throttled) < 3.0, throttled  # 0.1 + 0.2 + ... + 0.5 ≈ 1.5 s in all


def test_without_a_limit_nothing_waits_and_nothing_is_reported(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    throttled: list[float] = []
    policy = AccessPolicy(reconcile_budget=1.0, call_timeout=1.0, attempts=1)
    kube = kube_mod.Kube(
        client.ApiClient(client.Configuration()), policy, on_throttle=throttled.append
    )

    async def call(*_: Any) -> tuple[int, str, bytes, dict[str, str]]:
        return 200, "OK", b'{"kind": "Pod"}', {}

    monkeypatch.setattr(kube.transport, "call", call)

    async def many() -> list[Any]:
        calls = [kube.request("GET", "/x", deadline=policy.reconcile_deadline()) for _ in range(50)]
        return await asyncio.gather(*calls)

    started = time.monotonic()
    assert len(asyncio.run(many())) == 50
    assert time.monotonic() - started < 1.0
    assert throttled == []
